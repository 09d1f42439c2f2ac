"""``manage.py asherah_keys``: list the metastore's system and intermediate keys."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from asherah_core.errors import AsherahError
from asherah_core.integrations.django.factory import get_factory


class Command(BaseCommand):
    """One line per stored key: id, created, revoked, parent key (never key bytes)."""

    help = "List the keys in the metastore of settings.ASHERAH (ids and dates, no key bytes)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--prefix", default="", help="only ids starting with this")
        parser.add_argument("--json", action="store_true", help="one JSON object per line")

    def handle(self, *args: Any, **options: Any) -> None:
        metastore = get_factory().metastore
        try:
            rows = list(metastore.keys(options["prefix"]))
        except AsherahError as error:
            raise CommandError(str(error)) from error
        for key_id, created, record in rows:
            parent = record.parent_key_meta
            when = datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            if options["json"]:
                line = json.dumps(
                    {
                        "id": key_id,
                        "created": created,
                        "revoked": record.revoked,
                        "parent": None
                        if parent is None
                        else {"id": parent.key_id, "created": parent.created},
                    },
                    ensure_ascii=False,
                )
            else:
                line = "\t".join(
                    [
                        key_id,
                        when,
                        "revoked" if record.revoked else "active",
                        "-" if parent is None else str(parent),
                    ]
                )
            self.stdout.write(line)
        if not options["json"]:
            self.stderr.write(f"{len(rows)} key(s)")
