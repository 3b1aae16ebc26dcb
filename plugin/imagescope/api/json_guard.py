"""Refusing JSON that parses in Python but breaks later: 422 before any route runs.

Python's ``json`` accepts ``NaN``, ``Infinity``, ``1e999`` (as inf), integers of
thousands of digits, lone UTF-16 surrogates (``"\\ud800"``, which no UTF-8
encoder will write back) and nesting deep enough to exhaust the stack. Each of
these used to end in a 500 somewhere downstream. ``JsonGuard`` parses JSON
request bodies once with strict hooks and answers 422 in the API's error shape
(``{"error", "detail"}``) naming what was wrong; valid bodies are replayed to
the app unchanged. Bodies are bounded by ``BodySizeLimit``, which must wrap
this middleware (be added after it).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Deepest nesting of arrays/objects accepted (the API's own bodies need < 10).
MAX_DEPTH = 64
#: Integers outside the signed 64-bit range are refused (no field needs them).
_INT_LIMIT = 2**63
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class JsonRefused(ValueError):
    """The body is JSON Python reads, but not JSON this API accepts."""


def _constant(name: str) -> Any:
    raise JsonRefused(f"{name} is not a valid JSON number; send a finite number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRefused(f"number {text[:40]} is out of range; send a finite number")
    return value


def _int(text: str) -> int:
    if len(text) > 20 or not -_INT_LIMIT <= int(text) < _INT_LIMIT:
        raise JsonRefused(f"integer {text[:40]} is out of range (signed 64-bit)")
    return int(text)


def _walk(value: Any, *, surrogates: bool) -> None:
    """Checks nesting depth and (when the body has surrogate escapes) the strings."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: list[Any] = [*item.keys(), *item.values()]
        elif isinstance(item, list):
            children = item
        else:
            if surrogates and isinstance(item, str):
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise JsonRefused(
                        "a string holds a lone UTF-16 surrogate (such as \\ud800); "
                        "send valid Unicode text"
                    ) from None
            continue
        if depth > MAX_DEPTH:
            raise JsonRefused(f"the JSON body is nested more than {MAX_DEPTH} levels deep")
        stack.extend((child, depth + 1) for child in children)


def check_json(body: bytes) -> str | None:
    """Why ``body`` is refused, or None when it is acceptable (or not JSON at all:
    the route's own parser reports syntax errors)."""
    try:
        value = json.loads(body, parse_constant=_constant, parse_float=_float, parse_int=_int)
        _walk(value, surrogates=_SURROGATE_ESCAPE.search(body) is not None)
    except JsonRefused as exc:
        return str(exc)
    except RecursionError:
        return f"the JSON body is nested more than {MAX_DEPTH} levels deep"
    except ValueError:  # syntax errors, bad encodings: left to the route's parser
        return None
    return None


def refused(detail: str) -> JSONResponse:
    return JSONResponse({"error": "InvalidJsonError", "detail": detail}, status_code=422)


class JsonGuard:
    """Pure ASGI middleware over request bodies that are (or may be) JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        content_type = Headers(scope=scope).get("content-type", "")
        if content_type and "json" not in content_type:
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, receive, send)  # disconnected: let the app see it
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        reason = check_json(body) if body.strip() else None
        if reason is not None:
            await refused(reason)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
