"""The Redis job store's transitions and the Redis answer cache, on a real redis-server."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from imagescope.errors import UnknownIdError
from imagescope.jobs.base import JobRecord
from imagescope.jobs.cache import RedisAnswerCache
from imagescope.jobs.redis_store import RedisJobStore, connect
from imagescope.pipeline.context import cache_key
from imagescope.schemas import Answer, JobState, RerankRequest
from tests.fixtures.redis import RedisServer
from tests.unit.test_jobs import make_components, make_request

pytestmark = pytest.mark.integration


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    connection = connect(redis_server.url())
    yield connection
    connection.close()


@pytest.fixture
def store(client: redis.Redis) -> RedisJobStore:
    return RedisJobStore(client, prefix=f"t-{uuid.uuid4().hex[:8]}:", result_ttl_s=120)


@pytest.fixture(scope="module")
def request_() -> RerankRequest:
    return make_request(make_components())


def test_create_is_idempotent_and_records_round_trip(
    store: RedisJobStore, request_: RerankRequest
) -> None:
    record, created = store.create(JobRecord.new("a", request_))
    again, created_again = store.create(JobRecord.new("a", request_))
    assert (created, created_again) == (True, False)
    assert again.request == request_ and again.state is JobState.QUEUED
    assert again.created_at > 0 and again.enqueued_at == again.created_at
    assert list(store.open_ids()) == ["a"]
    with pytest.raises(UnknownIdError):
        store.get("missing")


def test_only_one_of_many_concurrent_claims_wins(
    store: RedisJobStore, request_: RerankRequest
) -> None:
    store.create(JobRecord.new("a", request_))
    with ThreadPoolExecutor(16) as pool:
        claims = list(pool.map(lambda n: store.claim("a", worker=f"w{n}", lease_s=30), range(32)))
    winners = [c for c in claims if c is not None]
    assert len(winners) == 1
    assert store.get("a").attempts == 1 and store.get("a").worker == winners[0].worker


def test_final_state_is_written_once_and_expires(
    store: RedisJobStore, client: redis.Redis, request_: RerankRequest
) -> None:
    store.create(JobRecord.new("a", request_))
    store.claim("a", worker="w", lease_s=30)
    assert store.heartbeat("a", 0.7) is JobState.RUNNING
    with ThreadPoolExecutor(8) as pool:
        writes = list(
            pool.map(
                lambda _: store.finish("a", state=JobState.SUCCEEDED, result=request_.stage1),
                range(8),
            )
        )
    assert writes.count(True) == 1
    record = store.get("a")
    assert record.result_writes == 1 and record.progress == 1.0 and record.result is not None
    assert store.cancel("a").state is JobState.SUCCEEDED  # final: cancel changes nothing
    assert list(store.open_ids()) == []
    assert 0 < client.ttl(store.key("a")) <= 120


def test_heartbeat_reports_cancellation_and_progress_only_grows(
    store: RedisJobStore, request_: RerankRequest
) -> None:
    store.create(JobRecord.new("a", request_))
    store.claim("a", worker="w", lease_s=30)
    store.heartbeat("a", 0.7)
    store.heartbeat("a", 0.2)
    assert store.get("a").progress == pytest.approx(0.7)
    store.cancel("a")
    assert store.heartbeat("a", 0.9) is JobState.CANCELLED
    assert store.claim("a", worker="w2", lease_s=0) is None


def test_stale_jobs_are_requeued_once(store: RedisJobStore, request_: RerankRequest) -> None:
    for job_id in ("queued", "silent", "alive"):
        store.create(JobRecord.new(job_id, request_))
    store.claim("silent", worker="dead", lease_s=30)
    store.claim("alive", worker="ok", lease_s=30)
    time.sleep(0.3)
    store.heartbeat("alive")

    def requeue(job_id: str) -> bool:
        return store.requeue_if_stale(job_id, queued_for_s=0.2, silent_for_s=0.2)

    with ThreadPoolExecutor(8) as pool:  # several reconcilers at once
        outcomes = list(pool.map(requeue, ["queued", "silent", "alive"] * 4))
    assert outcomes.count(True) == 2
    assert store.get("silent").state is JobState.QUEUED
    assert store.get("alive").state is JobState.RUNNING
    claimed = store.claim("silent", worker="new", lease_s=30)
    assert claimed is not None and claimed.attempts == 2


def test_wait_wakes_up_when_the_job_finishes(store: RedisJobStore, request_: RerankRequest) -> None:
    store.create(JobRecord.new("a", request_))
    timer = threading.Timer(0.3, store.finish, args=("a",), kwargs={"state": JobState.FAILED})
    timer.start()
    start = time.monotonic()
    record = store.wait("a", 10)
    elapsed = time.monotonic() - start
    assert record.state is JobState.FAILED
    assert 0.25 < elapsed < 0.9  # woken by the announcement, not the 1 s re-read
    assert store.wait("a", 0).state is JobState.FAILED


def test_answer_cache_round_trip_with_ttl(client: redis.Redis) -> None:
    prefix = f"c-{uuid.uuid4().hex[:8]}:"
    cache = RedisAnswerCache(client, ttl_s=60, prefix=prefix)
    key = cache_key("img-1", "Is there a dog?", "verifier-x")
    other_model = cache_key("img-1", "Is there a dog?", "verifier-y")
    cache.put_many({key: Answer(yes=True, p_yes=0.9, raw="yes")})
    assert cache.get_many([key, other_model]) == {key: Answer(yes=True, p_yes=0.9, raw="yes")}
    assert 0 < client.ttl(f"{prefix}answer:{key}") <= 60
    client.set(f"{prefix}answer:{other_model}", b"not json")
    assert cache.get_many([other_model]) == {}  # unreadable entries are misses
