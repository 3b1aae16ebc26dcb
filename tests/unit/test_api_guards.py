"""The API's input guards as plain functions: strict JSON, bounds, tenants, tokens,
client-safe error text."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from imagescope.api.bounds import LimitExceededError, check_query, check_stage1
from imagescope.api.errors import client_text, redact_addresses
from imagescope.api.json_guard import MAX_DEPTH, check_json
from imagescope.api.tenancy import PUBLIC, ImageTokens, tenant_for, tenant_id
from imagescope.schemas import (
    Candidate,
    DialogQuery,
    DialogTurn,
    Proposition,
    SearchResult,
    TextQuery,
    Trace,
)
from imagescope.settings import ApiSettings, LimitSettings, Settings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"deadline_s": NaN}', "NaN is not a valid JSON number"),
        (b'{"x": -Infinity}', "-Infinity is not a valid JSON number"),
        (b'{"x": 1e999}', "out of range"),
        (b'{"x": ' + b"9" * 5000 + b"}", "out of range"),
        (b'{"x": 9223372036854775808}', "out of range"),
        (b'{"text": "\\ud800"}', "lone UTF-16 surrogate"),
        (b'{"\\udfff": 1}', "lone UTF-16 surrogate"),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nested more than"),
        (b"[" * 100_000 + b"]" * 100_000, "nested more than"),
    ],
)
def test_strict_json_refusals_name_the_problem(body: bytes, reason: str) -> None:
    assert reason in (check_json(body) or "")


@pytest.mark.parametrize(
    "body",
    [
        b'{"text": "\\ud83d\\ude00 ok"}',  # a valid surrogate pair
        b'{"x": 9223372036854775807, "y": -1.5e300}',
        b"[" * MAX_DEPTH + b"]" * MAX_DEPTH,
        b"{not json",  # syntax errors are left to the route's parser
    ],
)
def test_strict_json_accepts_what_is_valid(body: bytes) -> None:
    assert check_json(body) is None


LIMITS = LimitSettings(max_query_chars=10, max_dialog_turns=2, max_candidates=3,
                       max_propositions=2)  # fmt: skip


def test_query_bounds_name_the_limit() -> None:
    check_query(TextQuery(text="x" * 10), LIMITS)
    with pytest.raises(LimitExceededError, match="max_query_chars") as err:
        check_query(TextQuery(text="x" * 11), LIMITS)
    assert err.value.status_code == 422 and "IMAGESCOPE_LIMITS__MAX_QUERY_CHARS" in str(err.value)
    turns = [DialogTurn(question="q", answer="a")] * 3
    with pytest.raises(LimitExceededError, match="max_dialog_turns"):
        check_query(DialogQuery(caption="c", turns=turns), LIMITS)
    with pytest.raises(LimitExceededError, match="turn 1 answer"):
        check_query(DialogQuery(caption="c", turns=[DialogTurn(question="q", answer="a" * 11)]),
                    LIMITS)  # fmt: skip


def test_stage1_bounds_name_the_limit() -> None:
    candidates = [Candidate(id=str(n), score=0.0, stage1_rank=n + 1) for n in range(4)]
    with pytest.raises(LimitExceededError, match="max_candidates"):
        check_stage1(SearchResult(candidates=candidates, trace=Trace()), LIMITS)
    props = [Proposition(question="q?")] * 3
    with pytest.raises(LimitExceededError, match="max_propositions"):
        check_stage1(SearchResult(candidates=[], trace=Trace(propositions=props)), LIMITS)


def settings(**api: object) -> Settings:
    return Settings(_env_file=None, api=ApiSettings(**api))  # type: ignore[call-arg,arg-type]


def test_tenants_are_keys_and_admins_are_marked() -> None:
    assert tenant_for(settings(), None) is PUBLIC
    keyed = settings(api_keys=[SecretStr("a"), SecretStr("b")], admin_keys=[SecretStr("root")])
    assert tenant_for(keyed, None) is None and tenant_for(keyed, "c") is None
    a, b, root = (tenant_for(keyed, k) for k in ("a", "b", "root"))
    assert a is not None and b is not None and root is not None
    assert a.id == tenant_id("a") != b.id and not a.admin and root.admin
    assert a.id.startswith("k") and len(a.id) == 17  # a digest of the key, not the key


def test_image_tokens_expire_and_cannot_be_forged() -> None:
    tokens = ImageTokens(b"secret", ttl_s=60)
    token, expires = tokens.issue("k1", now=1000.0)
    assert expires == 1060 and tokens.valid(token, now=1059.0)
    assert not tokens.valid(token, now=1061.0)
    forged = token.replace(".1060.", ".9999999999.")
    assert not tokens.valid(forged, now=1000.0)
    assert not ImageTokens(b"other", ttl_s=60).valid(token, now=1000.0)
    assert not tokens.valid("garbage") and not tokens.valid("")


def test_server_errors_never_show_internal_addresses() -> None:
    message = "Error 111 connecting to 127.0.0.1:6379; redis://redis:6379/0; node-1:9200"
    assert "6379" not in client_text(message, status=503)
    assert "9200" not in client_text(message, status=503)
    assert client_text(message, status=404) == message  # client errors keep their words
    assert client_text("bad \ud800 id", status=404) == "bad ? id"
    assert redact_addresses("[::1]:6379 refused") == "<address> refused"
