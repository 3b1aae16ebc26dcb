"""Who is calling: API keys as tenants, admin keys, and image tokens for ``<img>``.

With ``api.api_keys`` (or ``api.admin_keys``) set, every ``/v1`` request needs
``X-API-Key``. Each key is a tenant: its jobs are stored under a tenant id (a
hash of the key, never the key) and no other key can read, cancel, delete or
replay them (404). An admin key is a tenant too and may also address any job
by its full key ``<tenant id>~<job id>`` (the form worker logs show). Without
keys, every caller is the one public tenant.

Images: an ``<img>`` element cannot send a header, so ``POST /v1/image-token``
(with the key) returns a short-lived signed token and sets it as an HttpOnly,
SameSite=Strict cookie that only the image routes accept; they take the key,
that cookie, or ``?token=<token>`` (a signed URL). Tokens grant image reads
only and expire after ``api.image_token_ttl_s``. A same-origin browser request
(``Sec-Fetch-Site: same-origin``, i.e. the search page's own fetch calls) that
carries a valid key also gets the cookie, renewed when half its life is gone,
so the page's thumbnails load without any extra call.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request, Response, Security
from fastapi.security import APIKeyCookie, APIKeyHeader

from imagescope.jobs.base import PUBLIC_OWNER
from imagescope.settings import Settings

API_KEY_HEADER = "X-API-Key"
IMAGE_COOKIE = "imagescope_image_token"
#: The cookie is sent with every /v1 request (so its age is seen and it is renewed
#: in time) but only the image routes accept it.
IMAGE_COOKIE_PATH = "/v1"
_api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)
_image_cookie = APIKeyCookie(name=IMAGE_COOKIE, auto_error=False)


@dataclass(frozen=True)
class Tenant:
    id: str
    admin: bool = False


PUBLIC = Tenant(PUBLIC_OWNER)


def tenant_id(key: str) -> str:
    """A stable, non-secret id for an API key (the owner of its jobs)."""
    return "k" + hashlib.sha256(f"imagescope-tenant:{key}".encode()).hexdigest()[:16]


def _matches(given: bytes, keys: list[str]) -> str | None:
    found = None
    for key in keys:  # every key is compared, so timing does not tell which matched
        if hmac.compare_digest(given, key.encode()):
            found = key
    return found


def keys_enabled(settings: Settings) -> bool:
    return bool(settings.api.api_keys or settings.api.admin_keys)


def tenant_for(settings: Settings, key: str | None) -> Tenant | None:
    """The tenant ``key`` stands for; None when keys are on and it is not one of them."""
    if not keys_enabled(settings):
        return PUBLIC
    given = (key or "").encode()
    admin = _matches(given, [k.get_secret_value() for k in settings.api.admin_keys])
    if admin is not None:
        return Tenant(tenant_id(admin), admin=True)
    plain = _matches(given, [k.get_secret_value() for k in settings.api.api_keys])
    return None if plain is None else Tenant(tenant_id(plain))


def unauthorized() -> HTTPException:
    return HTTPException(
        status_code=401,
        detail=f"missing or unknown API key; send a valid key in the {API_KEY_HEADER} header",
        headers={"WWW-Authenticate": "APIKey"},
    )


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def require_tenant(
    request: Request, response: Response, key: Annotated[str | None, Security(_api_key_header)]
) -> Tenant:
    """The calling tenant (401 when keys are on and ``X-API-Key`` is not one of them)."""
    settings = _settings(request)
    tenant = tenant_for(settings, key)
    if tenant is None:
        raise unauthorized()
    if keys_enabled(settings) and request.headers.get("sec-fetch-site") == "same-origin":
        tokens = image_tokens(request)
        left = tokens.seconds_left(request.cookies.get(IMAGE_COOKIE, ""))
        if left < tokens.ttl_s / 2:
            set_image_cookie(request, response, tenant)
    return tenant


TenantDep = Annotated[Tenant, Depends(require_tenant)]


class ImageTokens:
    """Signs and checks ``v1.<expiry>.<tenant>.<hmac>`` tokens."""

    def __init__(self, secret: bytes, ttl_s: int) -> None:
        self._secret = secret
        self.ttl_s = ttl_s

    def _mac(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()

    def issue(self, tenant: str, *, now: float | None = None) -> tuple[str, int]:
        expires = int((time.time() if now is None else now) + self.ttl_s)
        payload = f"v1.{expires}.{tenant}"
        return f"{payload}.{self._mac(payload)}", expires

    def seconds_left(self, token: str, *, now: float | None = None) -> float:
        """How long ``token`` stays valid (0 for a forged, malformed or expired one)."""
        payload, _, mac = token.rpartition(".")
        parts = payload.split(".")
        if len(parts) != 3 or parts[0] != "v1" or not parts[1].isdigit():
            return 0.0
        if not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            return 0.0
        return max(0.0, int(parts[1]) - (time.time() if now is None else now))

    def valid(self, token: str, *, now: float | None = None) -> bool:
        return self.seconds_left(token, now=now) > 0


def image_tokens(request: Request) -> ImageTokens:
    """The app's token signer (a random secret per app unless one is configured)."""
    tokens: ImageTokens | None = getattr(request.app.state, "image_tokens", None)
    if tokens is None:
        api = _settings(request).api
        configured = api.image_token_secret
        secret = configured.get_secret_value().encode() if configured else secrets.token_bytes(32)
        tokens = ImageTokens(secret, api.image_token_ttl_s)
        request.app.state.image_tokens = tokens
    return tokens


def set_image_cookie(request: Request, response: Response, tenant: Tenant) -> tuple[str, int]:
    """Issues an image token, sets it as the image cookie; returns it and its expiry."""
    tokens = image_tokens(request)
    token, expires = tokens.issue(tenant.id)
    response.set_cookie(
        IMAGE_COOKIE,
        token,
        max_age=tokens.ttl_s,
        path=IMAGE_COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return token, expires


def require_image_access(
    request: Request,
    key: Annotated[str | None, Security(_api_key_header)],
    cookie: Annotated[str | None, Security(_image_cookie)],
    token: Annotated[
        str | None, Query(description="An image token from POST /v1/image-token.")
    ] = None,
) -> None:
    """Image routes: the API key, the image cookie, or a ``token`` query parameter."""
    settings = _settings(request)
    if tenant_for(settings, key) is not None:
        return
    tokens = image_tokens(request)
    if any(t and tokens.valid(t) for t in (cookie, token)):
        return
    raise HTTPException(
        status_code=401,
        detail=f"images need the {API_KEY_HEADER} header, or an image token from "
        "POST /v1/image-token (cookie or ?token=); the token may have expired",
        headers={"WWW-Authenticate": "APIKey"},
    )
