#!/usr/bin/env bash
# Install the Debian packages of the database servers the metastore tests start as throwaway
# instances (tools/dbservers), when they are absent. Needs root (apt-get); does nothing when
# both servers are installed. `nox -s metastores` runs it unless ASHERAH_POSTGRES_URL and
# ASHERAH_MYSQL_URL name servers to use instead.
set -euo pipefail
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing+=(postgresql)
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-db-servers: ${missing[*]} missing; run as root, or install them yourself:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    echo "or point the tests at servers: ASHERAH_POSTGRES_URL, ASHERAH_MYSQL_URL" >&2
    exit 1
fi
echo "install-db-servers: installing ${missing[*]} (apt-get)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
