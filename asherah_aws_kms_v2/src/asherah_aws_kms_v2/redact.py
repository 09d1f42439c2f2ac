"""Keep key material and credentials out of botocore's DEBUG logs.

At DEBUG, botocore logs every request's parameters and body and every response body, which for
GenerateDataKey, Encrypt and Decrypt include the data key (``Plaintext``, base64), and it logs
the session token and the request signature (which would let a log reader replay a Decrypt for
a few minutes). `install_log_redaction` puts a `RedactingFilter` on the loggers that write such
records; making an `AwsKms` calls it, so every process that uses the plugin has it.

A filter on a logger only sees records created by that logger, not its children's, so the
filter goes on each module logger by name rather than on ``botocore``.
"""

from __future__ import annotations

import logging
import re

from asherah_core.forksafe import Lock

__all__ = ["REDACTED", "RedactingFilter", "install_log_redaction", "redact"]

REDACTED = "<redacted>"

# Loggers known to write request or response payloads or signed headers, plus their neighbours
# on the request path; every other ``botocore.*`` logger that exists at install time is added.
_LOGGERS = (
    "botocore.endpoint",  # "Making request ... with params" (body), "Sending http request"
    "botocore.parsers",  # "Response body"
    "botocore.auth",  # CanonicalRequest (session token), Signature
    "botocore.hooks",
    "botocore.client",
    "botocore.httpsession",
    "botocore.awsrequest",
    "botocore.retries.standard",
    "urllib3.connectionpool",
)

# A secret-valued field, as a JSON member, a Python dict item or a keyword: the name, then
# ": " or "=", then a quoted value (optionally a bytes literal). Group 4 is the value.
_QUOTED_FIELD = re.compile(
    r"""(["']?(?:Plaintext|SecretAccessKey|SessionToken|aws_secret_access_key|aws_session_token"""
    r"""|SecretKey)["']?\s*[:=]\s*)(b?)(["'])((?:\\.|(?!\3).)*)\3""",
    re.IGNORECASE | re.DOTALL,
)
# The session token as a header ("X-Amz-Security-Token': b'…") or canonical header line.
_TOKEN_HEADER = re.compile(
    r"""(x-amz-security-token['"]?\s*[:=]\s*b?['"]?)([^'"\s,}>&]+)""", re.IGNORECASE
)
# A SigV4 signature: "Signature=<hex>" in Authorization, "Signature:\n<hex>" from botocore.auth.
_SIGNATURE = re.compile(r"""((?:X-Amz-)?Signature[=:]\s*)([0-9a-fA-F]{64})""")
_HINTS = ("plaintext", "secret", "token", "signature")


def redact(text: str) -> str:
    """Return `text` with data keys, secret keys, session tokens and signatures replaced."""
    lowered = text.lower()
    if not any(hint in lowered for hint in _HINTS):
        return text
    text = _QUOTED_FIELD.sub(lambda m: f"{m[1]}{m[2]}{m[3]}{REDACTED}{m[3]}", text)
    text = _TOKEN_HEADER.sub(lambda m: f"{m[1]}{REDACTED}", text)
    return _SIGNATURE.sub(lambda m: f"{m[1]}{REDACTED}", text)


class RedactingFilter(logging.Filter):
    """Rewrite a record whose message holds key material or credentials; never drop one.

    The message is formatted once here; when something was redacted, the record carries the
    redacted text with no arguments left to format, so every handler sees the same safe text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the handler's to report, as without us
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


_FILTER = RedactingFilter()
_install_lock = Lock()  # (forksafe: unlocked in a forked child)


def install_log_redaction() -> None:
    """Put the redacting filter on botocore's loggers (and urllib3's); idempotent, thread-safe.

    Called whenever an `AwsKms` is made. An application that makes its own boto3 KMS clients
    can call it too.
    """
    names = set(_LOGGERS)
    names.update(
        name
        for name in list(logging.Logger.manager.loggerDict)
        if name == "botocore" or name.startswith("botocore.")
    )
    with _install_lock:
        for name in sorted(names):
            logger = logging.getLogger(name)
            if not any(isinstance(f, RedactingFilter) for f in logger.filters):
                logger.addFilter(_FILTER)
