"""Completion webhooks: an HMAC-SHA256 signed POST when a job succeeds or fails.

The body is the job's status as JSON. Two headers let the receiver check it::

    X-ImageScope-Timestamp: 1767225600
    X-ImageScope-Signature: t=1767225600,v1=<hex HMAC-SHA256(secret, "<t>." + body)>

Receivers recompute the HMAC over the raw body with the shared secret
(``settings.jobs.webhook_secret``), compare in constant time, and refuse old
timestamps (:func:`verify_signature` does all three). Delivery is retried a
bounded number of times on network errors, 429 and 5xx; a webhook that still
fails is recorded on the job and never fails it.

Delivery connects to the address that was checked (no second DNS lookup, so a
name cannot be rebound to a private address in between): the request goes to
that IP with the name in the ``Host`` header and as TLS SNI (the certificate is
checked for the name). Proxy environment variables are ignored, redirects are
not followed, and neither logs nor recorded outcomes carry the URL's query
string (it may hold a token).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import socket
import time
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx
from pydantic import SecretStr
from tenacity import RetryError, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from imagescope.errors import InputError
from imagescope.jobs.base import JobRecord, JobStore
from imagescope.jobs.runner import Notify

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-ImageScope-Signature"
TIMESTAMP_HEADER = "X-ImageScope-Timestamp"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str, body: bytes, header: str, *, tolerance_s: float = 300.0, now: float | None = None
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` within ``tolerance_s`` of now."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).rsplit("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _is_public(address.ipv4_mapped)
    return address.is_global and not address.is_multicast


def redact_url(url: str) -> str:
    """``url`` without credentials, query and fragment (safe to log)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid url>"
    if ":" in host:
        host = f"[{host}]"
    query = "?<redacted>" if parts.query else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{query}"


class RedactQueryFilter(logging.Filter):
    """Rewrites URL arguments of log records without their query string.

    Installed on the ``httpx`` logger, which logs every request's full URL at INFO.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_url(str(arg)) if isinstance(arg, httpx.URL) else arg for arg in record.args
            )
        return True


def install_log_redaction() -> None:
    """Keeps URL query strings (webhook tokens) out of httpx's request log lines."""
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, RedactQueryFilter) for f in logger.filters):
        logger.addFilter(RedactQueryFilter())


def resolve_webhook_url(url: str, *, allow_private: bool) -> str | None:
    """Checks ``url`` and returns the address to connect to (None: connect by name).

    Refuses non-http(s) URLs and, unless ``allow_private``, hosts with any
    non-public address; the first checked address is the one to pin.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise InputError(f"webhook_url {redact_url(url)!r} is not a valid URL: {exc}") from exc
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InputError(f"webhook_url {redact_url(url)!r} must be an http(s) URL with a host")
    if allow_private:
        return None
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise InputError(f"webhook host {parts.hostname!r} cannot be resolved: {exc}") from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    for address in addresses:
        if not _is_public(address):
            raise InputError(
                f"webhook host {parts.hostname!r} resolves to non-public address {address}; "
                "use a public URL or set IMAGESCOPE_JOBS__WEBHOOK_ALLOW_PRIVATE=true"
            )
    return str(addresses[0])


def check_webhook_url(url: str, *, allow_private: bool) -> None:
    """Refuse non-http(s) URLs and, unless allowed, hosts with non-public addresses."""
    resolve_webhook_url(url, allow_private=allow_private)


def _pinned(url: str, address: str | None) -> tuple[str, dict[str, str], dict[str, object]]:
    """The URL to request, extra headers and request extensions for ``address``."""
    if address is None:
        return url, {}, {}
    parts = urlsplit(url)
    name = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    host = f"[{address}]" if ":" in address else address
    target = SplitResult(parts.scheme, f"{host}{port}", parts.path, parts.query, "")
    extensions: dict[str, object] = {"sni_hostname": name} if parts.scheme == "https" else {}
    return urlunsplit(target), {"Host": f"{name}{port}"}, extensions


def _describe(exc: BaseException | None) -> str:
    """A failure in words, without the URL (httpx puts it in its messages)."""
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__ if exc is not None else "unknown error"


def _worth_retrying(exc: BaseException) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    return isinstance(exc, httpx.TransportError)


class WebhookSender:
    """Posts signed job statuses; ``notifier(store)`` plugs it into ``execute_job``."""

    def __init__(
        self,
        secret: SecretStr,
        *,
        timeout_s: float = 5.0,
        attempts: int = 3,
        allow_private: bool = False,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        install_log_redaction()
        self._secret = secret
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._allow_private = allow_private
        self._transport = transport

    def _post(self, client: httpx.Client, url: str, body: bytes, address: str | None) -> None:
        timestamp = int(time.time())
        target, headers, extensions = _pinned(url, address)
        headers.update(
            {
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: str(timestamp),
                SIGNATURE_HEADER: sign(self._secret.get_secret_value(), body, timestamp),
            }
        )
        request = client.build_request(
            "POST", target, content=body, headers=headers, extensions=extensions
        )
        client.send(request).raise_for_status()

    def deliver(self, url: str, body: bytes) -> str:
        """POST ``body`` to ``url`` with bounded retries; returns the outcome in words."""
        try:
            address = resolve_webhook_url(url, allow_private=self._allow_private)
        except InputError as exc:
            return f"refused: {exc}"
        retrying = Retrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=0.2, max=5.0),
            retry=retry_if_exception(_worth_retrying),
        )
        client = httpx.Client(
            timeout=self._timeout_s,
            transport=self._transport,
            trust_env=False,
            follow_redirects=False,
        )
        with client:
            try:
                for attempt in retrying:
                    with attempt:
                        self._post(client, url, body, address)
            except RetryError as exc:
                reason = _describe(exc.last_attempt.exception())
                return f"failed after {self._attempts} attempts: {reason}"
            except httpx.HTTPError as exc:
                return f"failed: {_describe(exc)}"
        return "delivered"

    def notifier(self, store: JobStore) -> Notify:
        def notify(record: JobRecord) -> None:
            url = record.request.webhook_url
            if not url:
                return
            outcome = self.deliver(url, record.status().model_dump_json().encode())
            log.info("job %s: webhook to %s %s", record.id, redact_url(url), outcome)
            store.set_webhook(record.id, outcome)

        return notify
