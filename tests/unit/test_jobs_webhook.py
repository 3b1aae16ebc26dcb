"""Completion webhooks (signing, bounded retries, never failing the job) and cache failure."""

from __future__ import annotations

import json
import time

import httpx
import pytest
import redis
from pydantic import SecretStr
from redis.backoff import NoBackoff
from redis.retry import Retry

from imagescope.errors import InputError
from imagescope.jobs.cache import RedisAnswerCache
from imagescope.jobs.inprocess import InProcessJobBackend
from imagescope.jobs.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookSender,
    check_webhook_url,
    sign,
    verify_signature,
)
from imagescope.schemas import Answer, JobState
from tests.fixtures.redis import free_port
from tests.unit.test_jobs import make_components, make_request

pytestmark = pytest.mark.unit

SECRET = "s3cret"
URL = "http://hooks.example.test/done"


def test_signature_round_trip_and_rejections() -> None:
    body = b'{"id": "j1", "state": "succeeded"}'
    now = int(time.time())
    header = sign(SECRET, body, now)
    assert header.startswith(f"t={now},v1=")
    assert verify_signature(SECRET, body, header)
    assert not verify_signature("other", body, header)
    assert not verify_signature(SECRET, body + b" ", header)
    assert not verify_signature(SECRET, body, header, now=now + 3600)  # replayed later
    assert not verify_signature(SECRET, body, "garbage")
    # A known vector: HMAC-SHA256("k", "1.{}") computed independently.
    assert sign("k", b"{}", 1).endswith(
        "v1=" + __import__("hmac").new(b"k", b"1.{}", "sha256").hexdigest()
    )


class Hooks:
    """A MockTransport that answers with scripted statuses and records requests."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status = self.statuses.pop(0) if self.statuses else 200
        return httpx.Response(status)


def sender(hooks: Hooks, attempts: int = 3) -> WebhookSender:
    return WebhookSender(
        SecretStr(SECRET),
        attempts=attempts,
        allow_private=True,
        transport=httpx.MockTransport(hooks),
    )


def test_delivery_is_signed_and_retried_on_5xx_only() -> None:
    hooks = Hooks([503, 502, 200])
    assert sender(hooks).deliver(URL, b'{"x": 1}') == "delivered"
    assert len(hooks.requests) == 3
    last = hooks.requests[-1]
    assert verify_signature(SECRET, last.content, last.headers[SIGNATURE_HEADER])
    assert last.headers[TIMESTAMP_HEADER] == last.headers[SIGNATURE_HEADER][2:].split(",")[0]
    refused = Hooks([400])
    assert sender(refused).deliver(URL, b"{}").startswith("failed")
    assert len(refused.requests) == 1  # a 4xx is not retried


def test_retries_are_bounded() -> None:
    hooks = Hooks([500] * 10)
    outcome = sender(hooks, attempts=2).deliver(URL, b"{}")
    assert outcome.startswith("failed after 2 attempts")
    assert len(hooks.requests) == 2


def test_webhook_urls_are_checked() -> None:
    with pytest.raises(InputError, match="http"):
        check_webhook_url("ftp://example.com/x", allow_private=True)
    with pytest.raises(InputError, match="non-public"):
        check_webhook_url("http://127.0.0.1:9/hook", allow_private=False)
    check_webhook_url("http://127.0.0.1:9/hook", allow_private=True)
    strict = WebhookSender(SecretStr(SECRET), transport=httpx.MockTransport(Hooks([])))
    assert strict.deliver("http://10.0.0.1/hook", b"{}").startswith("refused")


@pytest.mark.parametrize("statuses", [[200], [500, 500, 500]])
def test_finished_job_posts_its_status_and_a_failing_hook_does_not_fail_it(
    statuses: list[int],
) -> None:
    hooks = Hooks(list(statuses))
    components = make_components()
    backend = InProcessJobBackend(components, webhooks=sender(hooks))
    try:
        ref = backend.submit(make_request(components, webhook_url=URL))
        status = backend.wait(ref.id, 10)
        deadline = time.monotonic() + 10
        while not backend.store.get(ref.id).webhook and time.monotonic() < deadline:
            time.sleep(0.01)
        record = backend.store.get(ref.id)
    finally:
        backend.close()
    assert status.state is JobState.SUCCEEDED
    payload = json.loads(hooks.requests[0].content)
    assert payload["id"] == ref.id and payload["state"] == "succeeded"
    assert payload["result"]["stages"] == [1, 2, 3]
    expected = "delivered" if statuses == [200] else "failed after 3 attempts"
    assert record.webhook.startswith(expected)


def test_redis_answer_cache_misses_instead_of_failing_when_redis_is_down() -> None:
    client = redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    cache = RedisAnswerCache(client, ttl_s=60)
    assert cache.get_many(["k1", "k2"]) == {}
    cache.put_many({"k1": Answer(yes=True)})  # dropped, logged, no exception
    assert cache.get_many([]) == {}
