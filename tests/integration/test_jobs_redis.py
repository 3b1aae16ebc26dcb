"""The Redis job store's transitions and the Redis answer cache, on a real redis-server."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from imagescope.errors import UnknownIdError
from imagescope.jobs.base import JobRecord
from imagescope.jobs.cache import RedisAnswerCache
from imagescope.jobs.redis_store import RedisJobStore
from imagescope.pipeline.context import cache_key
from imagescope.schemas import Answer, JobState, RerankRequest
from tests.unit.test_jobs import make_components, make_request

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def request_() -> RerankRequest:
    return make_request(make_components())


def test_create_is_idempotent_and_records_round_trip(
    job_store: RedisJobStore, request_: RerankRequest
) -> None:
    record, created = job_store.create(JobRecord.new("a", request_))
    again, created_again = job_store.create(JobRecord.new("a", request_))
    assert (created, created_again) == (True, False)
    assert again.request == request_ and again.state is JobState.QUEUED
    assert again.created_at > 0 and again.enqueued_at == again.created_at
    assert list(job_store.open_ids()) == ["a"]
    with pytest.raises(UnknownIdError):
        job_store.get("missing")


def test_only_one_of_many_concurrent_claims_wins(
    job_store: RedisJobStore, request_: RerankRequest
) -> None:
    job_store.create(JobRecord.new("a", request_))
    with ThreadPoolExecutor(16) as pool:
        claims = list(
            pool.map(lambda n: job_store.claim("a", worker=f"w{n}", lease_s=30), range(32))
        )
    winners = [c for c in claims if c is not None]
    assert len(winners) == 1
    assert job_store.get("a").attempts == 1 and job_store.get("a").worker == winners[0].worker


def test_final_state_is_written_once_and_expires(
    job_store: RedisJobStore, redis_client: redis.Redis, request_: RerankRequest
) -> None:
    job_store.create(JobRecord.new("a", request_))
    job_store.claim("a", worker="w", lease_s=30)
    assert job_store.heartbeat("a", 0.7) is JobState.RUNNING
    with ThreadPoolExecutor(8) as pool:
        writes = list(
            pool.map(
                lambda _: job_store.finish("a", state=JobState.SUCCEEDED, result=request_.stage1),
                range(8),
            )
        )
    assert writes.count(True) == 1
    record = job_store.get("a")
    assert record.result_writes == 1 and record.progress == 1.0 and record.result is not None
    assert job_store.cancel("a").state is JobState.SUCCEEDED  # final: cancel changes nothing
    assert list(job_store.open_ids()) == []
    assert 0 < redis_client.ttl(job_store.key("a")) <= 120


def test_heartbeat_reports_cancellation_and_progress_only_grows(
    job_store: RedisJobStore, request_: RerankRequest
) -> None:
    job_store.create(JobRecord.new("a", request_))
    job_store.claim("a", worker="w", lease_s=30)
    job_store.heartbeat("a", 0.7)
    job_store.heartbeat("a", 0.2)
    assert job_store.get("a").progress == pytest.approx(0.7)
    job_store.cancel("a")
    assert job_store.heartbeat("a", 0.9) is JobState.CANCELLED
    assert job_store.claim("a", worker="w2", lease_s=0) is None


def test_stale_jobs_are_requeued_once(job_store: RedisJobStore, request_: RerankRequest) -> None:
    for job_id in ("queued", "silent", "alive"):
        job_store.create(JobRecord.new(job_id, request_))
    job_store.claim("silent", worker="dead", lease_s=30)
    job_store.claim("alive", worker="ok", lease_s=30)
    time.sleep(0.3)
    job_store.heartbeat("alive")

    def requeue(job_id: str) -> bool:
        return job_store.requeue_if_stale(job_id, queued_for_s=0.2, silent_for_s=0.2)

    with ThreadPoolExecutor(8) as pool:  # several reconcilers at once
        outcomes = list(pool.map(requeue, ["queued", "silent", "alive"] * 4))
    assert outcomes.count(True) == 2
    assert job_store.get("silent").state is JobState.QUEUED
    assert job_store.get("alive").state is JobState.RUNNING
    claimed = job_store.claim("silent", worker="new", lease_s=30)
    assert claimed is not None and claimed.attempts == 2


def test_wait_wakes_up_when_the_job_finishes(
    job_store: RedisJobStore, request_: RerankRequest
) -> None:
    job_store.create(JobRecord.new("a", request_))
    timer = threading.Timer(0.3, job_store.finish, args=("a",), kwargs={"state": JobState.FAILED})
    timer.start()
    start = time.monotonic()
    record = job_store.wait("a", 10)
    elapsed = time.monotonic() - start
    assert record.state is JobState.FAILED
    assert 0.25 < elapsed < 0.9  # woken by the announcement, not the 1 s re-read
    assert job_store.wait("a", 0).state is JobState.FAILED


def test_answer_cache_round_trip_with_ttl(redis_client: redis.Redis) -> None:
    prefix = f"c-{uuid.uuid4().hex[:8]}:"
    cache = RedisAnswerCache(redis_client, ttl_s=60, prefix=prefix)
    key = cache_key("img-1", "Is there a dog?", "verifier-x")
    other_model = cache_key("img-1", "Is there a dog?", "verifier-y")
    cache.put_many({key: Answer(yes=True, p_yes=0.9, raw="yes")})
    assert cache.get_many([key, other_model]) == {key: Answer(yes=True, p_yes=0.9, raw="yes")}
    assert 0 < redis_client.ttl(f"{prefix}answer:{key}") <= 60
    redis_client.set(f"{prefix}answer:{other_model}", b"not json")
    assert cache.get_many([other_model]) == {}  # unreadable entries are misses
