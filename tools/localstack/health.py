"""Health of a LocalStack endpoint: is KMS there and ready."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

from .common import ENDPOINT_ENV, HEALTH_PATH, READY_STATES, EndpointUnavailableError


def _is_loopback(endpoint: str) -> bool:
    host = urllib.parse.urlsplit(endpoint).hostname or ""
    return host in {"localhost", "127.0.0.1", "::1"}


def _kms_state(endpoint: str, timeout: float = 2.0) -> str:
    """Return the KMS state from LocalStack's health endpoint, or why it could not be read."""
    handlers = [urllib.request.ProxyHandler({})] if _is_loopback(endpoint) else []
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(endpoint + HEALTH_PATH, timeout=timeout) as response:
            body = json.loads(response.read())
    except (OSError, ValueError) as error:  # URLError, refused, timeout, bad JSON
        return f"unreachable ({error})"
    services = body.get("services") if isinstance(body, dict) else None
    if not isinstance(services, dict) or "kms" not in services:
        return "not listed"
    return str(services["kms"])


def _check_given_endpoint(endpoint: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        state = _kms_state(endpoint)
        if state in READY_STATES:
            return
        if time.monotonic() >= deadline:
            raise EndpointUnavailableError(
                f"{ENDPOINT_ENV}={endpoint} is set, but KMS there is {state} "
                f"(checked {endpoint}{HEALTH_PATH} for {timeout:.0f} s). Start LocalStack with "
                f"KMS at that address, or unset {ENDPOINT_ENV} to let the harness start its own."
            )
        time.sleep(0.5)
