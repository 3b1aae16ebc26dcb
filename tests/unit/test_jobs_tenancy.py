"""Jobs owned by API keys, per-key limits, delete, expiry, idempotent resubmit,
the circuit breaker (the job layer on fakes; the Redis twin is in
tests/integration/test_jobs_hardening.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from imagescope.errors import UnknownIdError
from imagescope.jobs.base import (
    PUBLIC_OWNER,
    JobBackend,
    JobConflictError,
    JobRecord,
    TooManyJobsError,
    input_digest,
    store_key,
)
from imagescope.jobs.bounded import BoundedReasoner
from imagescope.jobs.breaker import CircuitBreaker, CircuitOpenError
from imagescope.jobs.factory import job_components
from imagescope.jobs.fakes import KeywordReasoner
from imagescope.jobs.inprocess import InProcessJobBackend
from imagescope.jobs.memory import MemoryJobStore
from imagescope.schemas import JobState, Proposition, RerankRequest
from imagescope.settings import LimitSettings, Settings
from tests.unit.test_jobs import GatedVerifier, make_components, make_request

pytestmark = pytest.mark.unit


def check_owner_scoping(jobs: JobBackend, request: RerankRequest) -> None:
    """Shared by the memory and Redis backends."""
    a = jobs.submit(request, job_id="order-1", owner="tenant-a")
    b = jobs.submit(request, job_id="order-1", owner="tenant-b")  # same id, other owner
    assert a.id == b.id == "order-1"
    assert jobs.get("order-1", owner="tenant-a").id == "order-1"
    for call in (jobs.get, jobs.cancel, jobs.delete):
        with pytest.raises(UnknownIdError):
            call("order-1", owner="tenant-c")
    with pytest.raises(UnknownIdError):
        jobs.get("tenant-a~order-1", owner="tenant-c")  # full keys are for admins only
    admin = jobs.get("tenant-a~order-1", owner="admin", admin=True)
    assert admin.id == "order-1"
    jobs.delete("order-1", owner="tenant-a")
    with pytest.raises(UnknownIdError):
        jobs.get("order-1", owner="tenant-a")
    assert jobs.get("order-1", owner="tenant-b").id == "order-1"  # b's job untouched


def check_idempotent_resubmit(jobs: JobBackend, request: RerankRequest) -> None:
    digest = input_digest({"query": {"kind": "text", "text": "a red dress"}, "top_k": 6})
    first = jobs.submit(request, job_id="idem-1", owner="t", digest=digest)
    # stage 1 recomputed (other timings): the same client input is still the same job
    recomputed = request.model_copy(deep=True)
    recomputed.stage1.trace.timings["retrieve"] = 123.0
    again = jobs.submit(recomputed, job_id="idem-1", owner="t", digest=digest)
    assert again.id == first.id
    assert jobs.find("idem-1", owner="t", digest=digest) is not None
    assert jobs.find("idem-2", owner="t", digest=digest) is None
    with pytest.raises(JobConflictError):
        jobs.submit(request, job_id="idem-1", owner="t", digest=input_digest({"other": 1}))
    with pytest.raises(JobConflictError):
        jobs.find("idem-1", owner="t", digest=input_digest({"other": 1}))


def check_open_job_limit(jobs: JobBackend, request: RerankRequest) -> None:
    """``jobs`` allows 2 open jobs per owner and finishes none during the check."""
    jobs.submit(request, owner="t")
    jobs.submit(request, owner="t")
    with pytest.raises(TooManyJobsError, match="max_open_jobs") as err:
        jobs.submit(request, owner="t")
    assert err.value.status_code == 429
    jobs.submit(request, owner="other")  # the limit is per owner
    jobs.submit(request, job_id="x", owner="t2")
    jobs.submit(request, job_id="x", owner="t2")  # a resubmit is not a new job


@pytest.fixture
def request_() -> RerankRequest:
    return make_request(make_components())


def test_jobs_are_scoped_to_their_owner(request_: RerankRequest) -> None:
    jobs = InProcessJobBackend(make_components())
    try:
        check_owner_scoping(jobs, request_)
    finally:
        jobs.close()


def test_same_client_input_is_the_same_job(request_: RerankRequest) -> None:
    jobs = InProcessJobBackend(make_components())
    try:
        check_idempotent_resubmit(jobs, request_)
    finally:
        jobs.close()


def test_open_jobs_per_owner_are_bounded(request_: RerankRequest) -> None:
    gated = GatedVerifier(make_components().verifier)  # type: ignore[arg-type]
    jobs = InProcessJobBackend(make_components(verifier=gated), workers=1, max_open=2)
    try:
        check_open_job_limit(jobs, request_)
    finally:
        gated.gate.set()
        jobs.close()


def test_delete_cancels_a_running_job_and_hides_it(request_: RerankRequest) -> None:
    gated = GatedVerifier(make_components().verifier)  # type: ignore[arg-type]
    jobs = InProcessJobBackend(make_components(verifier=gated), workers=1)
    try:
        ref = jobs.submit(request_, owner="t")
        assert gated.entered.wait(10)
        status = jobs.delete(ref.id, owner="t")
        assert status.state is JobState.CANCELLED
        with pytest.raises(UnknownIdError):
            jobs.get(ref.id, owner="t")
        with pytest.raises(JobConflictError, match="deleted"):
            jobs.find(ref.id, owner="t", digest="x")
        gated.gate.set()
        record = jobs.store.wait(store_key("t", ref.id), 10)
        assert record.state is JobState.CANCELLED and record.deleted
        assert record.result_writes == 1  # the worker saw the cancellation, wrote nothing
    finally:
        gated.gate.set()
        jobs.close()


def test_memory_store_expires_finished_jobs(request_: RerankRequest) -> None:
    store = MemoryJobStore(result_ttl_s=0.2)
    store.create(JobRecord.new("done", request_))
    store.create(JobRecord.new("open", request_))
    store.finish("done", state=JobState.SUCCEEDED, result=request_.stage1)
    time.sleep(0.3)
    with pytest.raises(UnknownIdError):
        store.get("done")
    assert store.get("open").state is JobState.QUEUED  # unfinished jobs never expire
    time.sleep(1.0)
    store.create(JobRecord.new("later", request_))  # writes sweep expired records out
    assert len(store) == 2


def test_public_owner_keeps_plain_ids() -> None:
    assert store_key(PUBLIC_OWNER, "a") == "a"
    assert store_key("k1", "a") == "k1~a"


def test_circuit_breaker_opens_on_failure_and_half_opens_after_the_pause() -> None:
    now = [0.0]
    breaker = CircuitBreaker(reset_s=5.0, clock=lambda: now[0])
    breaker.before()
    breaker.failure()
    assert breaker.open
    with pytest.raises(CircuitOpenError):
        breaker.before()
    now[0] = 5.5
    breaker.before()  # one trial call goes through...
    with pytest.raises(CircuitOpenError):
        breaker.before()  # ...and the others still wait for it
    breaker.success()
    breaker.before()
    assert not breaker.open


class ManyPropositions(KeywordReasoner):
    def make_propositions(self, instruction: str, **kw: Any) -> list[Proposition]:
        return [Proposition(question=f"is there thing {n}?") for n in range(50)]


def test_rerank_jobs_verify_at_most_max_propositions(request_: RerankRequest) -> None:
    settings = Settings(_env_file=None, limits=LimitSettings(max_propositions=3))  # type: ignore[call-arg]
    components = job_components(make_components(reasoner=ManyPropositions()), settings)
    assert isinstance(components.reasoner, BoundedReasoner)
    assert job_components(components, settings).reasoner is components.reasoner  # wrapped once
    jobs = InProcessJobBackend(components)
    try:
        status = jobs.wait(jobs.submit(request_).id, 10)
    finally:
        jobs.close()
    assert status.result is not None and status.state is JobState.SUCCEEDED
    assert len(status.result.trace.propositions) == 3
    assert all(len(c.verdicts) <= 3 for c in status.result.candidates)
