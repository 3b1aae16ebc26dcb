"""Fetching images over http(s) without letting a URL reach private networks.

The host is resolved first and every address it resolves to must be public
(not private, loopback, link-local, multicast, reserved or unspecified; IPv4
inside IPv6 is unwrapped) unless ``limits.allow_private_urls``. The request then
goes to the checked address itself, with the original ``Host`` header and TLS
server name, so a second DNS answer cannot send it elsewhere (DNS rebinding).
Redirects are followed by hand and each target is checked the same way. The
body is streamed and cut off at ``limits.max_bytes``; ``limits.url_timeout_s``
bounds the whole fetch. Proxy variables from the environment are ignored.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time

import httpx

from imagescope.errors import ForbiddenSourceError, ImageError, ImageTooLargeError
from imagescope.settings import ImageLimits

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_REDIRECTS = 5
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_PRIVATE_HINT = (
    "only public hosts can be fetched; upload the image as data instead, or, for "
    "trusted internal hosts, set IMAGESCOPE_IMAGES__ALLOW_PRIVATE_URLS=true"
)


def is_public_address(address: IPAddress) -> bool:
    """True for globally routable unicast addresses (IPv4-mapped/6to4 unwrapped)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public_address(address.ipv4_mapped)
        if address.sixtofour is not None and not is_public_address(address.sixtofour):
            return False
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def resolve_host(host: str, port: int, *, limits: ImageLimits) -> list[IPAddress]:
    """Every address ``host`` resolves to; all must be public unless private URLs are allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ImageError(f"cannot resolve image host {host!r}: {exc}") from exc
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not limits.allow_private_urls:
        blocked = [a for a in addresses if not is_public_address(a)]
        if blocked:
            raise ForbiddenSourceError(
                f"image host {host!r} resolves to non-public address {blocked[0]}; {_PRIVATE_HINT}"
            )
    if not addresses:
        raise ImageError(f"image host {host!r} has no addresses")
    return addresses


def fetch_url(url: str, *, limits: ImageLimits) -> bytes:
    """GET an http(s) URL within ``limits``: public hosts only, bounded time and size.

    Redirects are followed by hand (at most ``MAX_REDIRECTS``), each target
    checked like the first URL. ``limits.url_timeout_s`` bounds the whole fetch.
    """
    deadline = time.monotonic() + limits.url_timeout_s
    current = _parse_http_url(url)
    with httpx.Client(
        timeout=limits.url_timeout_s, follow_redirects=False, trust_env=False
    ) as client:
        for _ in range(MAX_REDIRECTS + 1):
            result = _fetch_once(client, current, limits=limits, deadline=deadline)
            if isinstance(result, bytes):
                return result
            logger.debug("image URL %s redirects to %s", current, result)
            current = result
    raise ImageError(f"too many redirects (more than {MAX_REDIRECTS}) fetching {url!r}")


def _parse_http_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ImageError(f"invalid image URL {url!r}: {exc}") from exc
    if parsed.scheme not in {"http", "https"}:
        raise ForbiddenSourceError(f"unsupported URL scheme in {url!r}; only http(s) is fetched")
    if not parsed.raw_host:
        raise ImageError(f"image URL {url!r} has no host")
    return parsed


def _fetch_once(
    client: httpx.Client, url: httpx.URL, *, limits: ImageLimits, deadline: float
) -> bytes | httpx.URL:
    """One request: the body, or the next URL when the server redirects."""
    host = url.raw_host.decode("ascii")
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = resolve_host(host, port, limits=limits)
    last_error: Exception | None = None
    for address in addresses:  # the first address that accepts a connection
        request = _pinned_request(client, url, address=address, host=host, deadline=deadline)
        try:
            response = client.send(request, stream=True)
        except httpx.ConnectError as exc:
            last_error = exc
            continue
        except httpx.HTTPError as exc:
            raise _fetch_error(url, exc) from exc
        try:
            return _handle_response(response, url, limits=limits, deadline=deadline)
        except httpx.HTTPError as exc:
            raise _fetch_error(url, exc) from exc
        finally:
            response.close()
    raise ImageError(f"could not connect to image host {host!r}: {last_error}")


def _pinned_request(
    client: httpx.Client, url: httpx.URL, *, address: IPAddress, host: str, deadline: float
) -> httpx.Request:
    """A GET to the checked address, with the original Host header and TLS name."""
    return client.build_request(
        "GET",
        url.copy_with(host=str(address)),
        headers={
            "Host": url.netloc.decode("ascii"),
            "Accept": "image/*",
            # Images do not compress; a compressed body could expand past the limit.
            "Accept-Encoding": "identity",
        },
        extensions={"sni_hostname": host},
        timeout=max(0.1, deadline - time.monotonic()),
    )


def _fetch_error(url: httpx.URL, exc: httpx.HTTPError) -> ImageError:
    if isinstance(exc, httpx.TimeoutException):
        return ImageError(f"timed out fetching image {url}")
    return ImageError(f"could not fetch image {url}: {exc}")


def _handle_response(
    response: httpx.Response, url: httpx.URL, *, limits: ImageLimits, deadline: float
) -> bytes | httpx.URL:
    if response.status_code in _REDIRECT_CODES:
        location = response.headers.get("location")
        if not location:
            raise ImageError(f"image URL {url} redirects without a Location header")
        return _parse_http_url(str(url.join(location)))
    if response.status_code >= 400:
        raise ImageError(f"image URL {url} answered HTTP {response.status_code}")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        raise byte_limit_error(int(declared), limits)
    chunks: list[bytes] = []
    received = 0
    for chunk in response.iter_bytes():
        received += len(chunk)
        if received > limits.max_bytes:
            raise byte_limit_error(received, limits, at_least=True)
        if time.monotonic() > deadline:
            raise ImageError(f"fetching image {url} took longer than {limits.url_timeout_s:g}s")
        chunks.append(chunk)
    return b"".join(chunks)


def byte_limit_error(
    size: int, limits: ImageLimits, *, at_least: bool = False
) -> ImageTooLargeError:
    """The error for ``size`` bytes over ``limits.max_bytes``."""
    more = "more than " if at_least else ""
    return ImageTooLargeError(
        f"image is {more}{size} bytes, over the limit of {limits.max_bytes}; "
        "send a smaller file or raise IMAGESCOPE_IMAGES__MAX_BYTES"
    )
