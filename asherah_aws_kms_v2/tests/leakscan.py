"""Find secrets (keys, data keys, credentials) in captured text, in any printable form.

`LeakScanner` holds the secrets and the text seen (log records at DEBUG from every logger,
exception messages, reprs and tracebacks) and reports every secret that shows up raw, as hex,
as a Python bytes literal or as base64 (standard or URL-safe, at any byte alignment inside a
larger buffer). It indexes every 16-character window of every form, then probes the text every
16 characters, so a soak's megabytes of botocore DEBUG output against thousands of data keys
take a second, not an hour; a hit is confirmed by finding the whole form.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import threading
import traceback
from collections.abc import Iterable, Iterator

WINDOW = 16
STRIDE = 16  # any form of at least WINDOW + STRIDE - 1 characters contains a probed window


def forms(secret: bytes) -> Iterator[str]:
    """The ways `secret` (or enough of it to matter) could show up in text."""
    yield secret.hex()
    yield secret.hex().upper()
    yield repr(secret)[2:-1]
    yield secret.decode("latin-1")
    for shift in range(3):  # base64 of the secret at any alignment inside a larger buffer
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(secret[shift:]).decode()
            yield encoded[:-4] if len(encoded) > 8 else encoded


def exception_texts(error: BaseException) -> Iterator[str]:
    """The message, repr and traceback of `error` and of everything chained to it."""
    seen: set[int] = set()

    def walk(e: BaseException) -> Iterator[str]:
        if id(e) in seen:
            return
        seen.add(id(e))
        yield str(e)
        yield repr(e)
        yield "".join(traceback.format_exception(e))
        for linked in (e.__cause__, e.__context__):
            if linked is not None:
                yield from walk(linked)
        if isinstance(e, BaseExceptionGroup):
            for member in e.exceptions:
                yield from walk(member)

    yield from walk(error)


class LeakScanner:
    """Secrets to look for, and the text to look in; `leaks()` says what was found where."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: list[tuple[bytes, tuple[str, ...]]] = []
        self._known: set[bytes] = set()
        self._index: dict[int, int] = {}  # hash of a window -> secret number
        self._short: list[tuple[int, str]] = []  # forms too short for the windowed probe
        self._texts: list[str] = []

    @property
    def secret_count(self) -> int:
        return len(self._secrets)

    @property
    def text_size(self) -> int:
        return sum(map(len, self._texts))

    def add_secret(self, secret: bytes | str) -> None:
        data = secret.encode() if isinstance(secret, str) else bytes(secret)
        if len(data) < 8:
            raise ValueError("too short to look for")
        with self._lock:
            if data in self._known:
                return
            self._known.add(data)
            number = len(self._secrets)
            texts = tuple(dict.fromkeys(forms(data)))
            self._secrets.append((data, texts))
            for form in texts:
                if len(form) < WINDOW + STRIDE - 1:
                    self._short.append((number, form))
                    continue
                for i in range(len(form) - WINDOW + 1):
                    self._index.setdefault(hash(form[i : i + WINDOW]), number)

    def add_secrets(self, secrets: Iterable[bytes | str]) -> None:
        for secret in secrets:
            self.add_secret(secret)

    def add_text(self, text: str) -> None:
        with self._lock:
            self._texts.append(text)

    def add_error(self, error: BaseException) -> None:
        for text in exception_texts(error):
            self.add_text(text)

    def leaks(self) -> list[str]:
        """Each secret found, with the form and a little context (never the secret itself)."""
        found: dict[int, str] = {}
        for text in self._texts:
            for p in range(0, max(0, len(text) - WINDOW + 1), STRIDE):
                number = self._index.get(hash(text[p : p + WINDOW]))
                if number is None or number in found:
                    continue
                data, texts = self._secrets[number]
                span = text[max(0, p - 400) : p + 400]
                for form in texts:
                    if len(form) >= WINDOW + STRIDE - 1 and form in span:
                        found[number] = self._describe(data, form, text, text.find(form))
                        break
            for number, form in self._short:
                if number not in found and form in text:
                    data, _ = self._secrets[number]
                    found[number] = self._describe(data, form, text, text.find(form))
        return list(found.values())

    @staticmethod
    def _describe(secret: bytes, form: str, text: str, at: int) -> str:
        before = text[max(0, at - 60) : at].replace("\n", " ")
        return f"secret {secret[:3].hex()}… ({len(secret)} bytes) after {before!r}"


class CaptureHandler(logging.Handler):
    """Every record, formatted with its traceback, into a `LeakScanner`; counts; and the
    plugin's own messages at INFO and above, for assertions."""

    def __init__(self, scanner: LeakScanner) -> None:
        super().__init__(logging.DEBUG)
        self.scanner = scanner
        self.records = 0
        self.by_logger: dict[str, int] = {}
        self.messages: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:  # Handler.handle holds self.lock
        self.scanner.add_text(self.format(record))
        self.records += 1
        self.by_logger[record.name] = self.by_logger.get(record.name, 0) + 1
        if record.levelno >= logging.INFO and record.name.startswith("asherah"):
            self.messages.append(record.getMessage())


@contextlib.contextmanager
def capture_all_logs(scanner: LeakScanner, *, exclusive: bool = False) -> Iterator[CaptureHandler]:
    """Send every record of every logger, down to DEBUG (botocore's too), to `scanner`.

    With `exclusive`, the root's other handlers (pytest's capture) are detached meanwhile, so
    megabytes of botocore DEBUG output are not kept twice (nor printed on a failure).
    """
    root = logging.getLogger()
    handler = CaptureHandler(scanner)
    detached = list(root.handlers) if exclusive else []
    for other in detached:
        root.removeHandler(other)
    # Whatever set these to a higher level (a test, an import), let their DEBUG through.
    loggers = [root, *map(logging.getLogger, ("botocore", "urllib3", "asherah_aws_kms_v2"))]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for other in detached:
            root.addHandler(other)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
