"""Error answers in the one documented shape, ``ErrorBody`` ``{"error", "detail"}``.

- ``validation_error``: FastAPI's request validation (422) as ``ErrorBody``,
  naming each bad field and never echoing the input (which may be NaN, huge, or
  not encodable).
- ``client_text``: what any error message becomes before it reaches a client:
  encodable as UTF-8, and for server-side failures (5xx) without internal
  addresses (``host:port``, URLs, IPs), which stay in the server log.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_IPV6_PORT = re.compile(r"\[[0-9a-fA-F:.]+\](?::\d+)?")
_HOST_PORT = re.compile(r"\b(?:[A-Za-z0-9-]+\.)*[A-Za-z0-9-]+:\d{2,5}\b")
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
_MAX_ERRORS = 5


def redact_addresses(text: str) -> str:
    """``text`` with URLs, ``host:port`` pairs and IP addresses replaced."""
    for pattern, replacement in (
        (_URL, "<url>"),
        (_IPV6_PORT, "<address>"),
        (_HOST_PORT, "<address>"),
        (_IPV4, "<address>"),
    ):
        text = pattern.sub(replacement, text)
    return text


def client_text(text: str, *, status: int) -> str:
    """A message safe to send: UTF-8 encodable; no addresses when ``status`` >= 500."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return redact_addresses(text) if status >= 500 else text


def _location(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc) or "request"


def describe_errors(errors: Sequence[Any]) -> str:
    """'body.query.text: String should have at least 1 character; ...'"""
    parts = [f"{_location(e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in errors]
    more = len(parts) - _MAX_ERRORS
    text = "; ".join(parts[:_MAX_ERRORS]) + (f"; and {more} more" if more > 0 else "")
    return client_text(text, status=422)


async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(
        {"error": "RequestValidationError", "detail": describe_errors(exc.errors())},
        status_code=422,
    )
