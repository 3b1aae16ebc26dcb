"""The job layer on fakes: in-process backend, runner, reconciler, batching."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from imagescope.errors import InputError, ModelBackendError, ModelOutputError, UnknownIdError
from imagescope.jobs.base import JobConflictError, JobRecord, new_job_id
from imagescope.jobs.batching import BatchingVerifier
from imagescope.jobs.inprocess import InProcessJobBackend
from imagescope.jobs.memory import MemoryJobStore
from imagescope.jobs.reconciler import Reconciler
from imagescope.jobs.runner import Outcome, execute_job, is_transient
from imagescope.models.base import Verifier, VerifyItem
from imagescope.models.fakes import (
    TEXT_KEY,
    FakeEmbedder,
    HashEvaluator,
    HashVerifier,
    KeywordReasoner,
)
from imagescope.pipeline.context import Components, MemoryImageSource
from imagescope.pipeline.rerank import rerank
from imagescope.pipeline.stage1 import run_stage1
from imagescope.schemas import Answer, JobState, RerankRequest, TextQuery
from imagescope.settings import PipelineSettings
from imagescope.store.base import CatalogRecord
from imagescope.store.memory import MemoryStore

pytestmark = pytest.mark.unit

CAPTIONS = {
    f"img-{n}": f"a {c} {o}"
    for n, (c, o) in enumerate(
        (c, o) for o in ("dress", "shirt", "hat") for c in ("red", "blue", "green", "black")
    )
}


class GatedVerifier(Verifier):
    """Blocks every call until ``gate`` is set; records the calls."""

    model_id = "gated-verifier"

    def __init__(self, inner: Verifier) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.entered = threading.Event()

    def verify(self, items: Sequence[VerifyItem]) -> list[Answer]:
        self.entered.set()
        assert self.gate.wait(10), "test never opened the gate"
        return self.inner.verify(items)


def make_components(**overrides: object) -> Components:
    embedder = FakeEmbedder(dim=32)
    store = MemoryStore()
    store.ensure(32)
    ids = list(CAPTIONS)
    vectors = embedder.embed_texts([CAPTIONS[i] for i in ids])
    store.upsert(
        CatalogRecord(id=i, image_vector=vectors[n], caption_vector=vectors[n], caption=CAPTIONS[i])
        for n, i in enumerate(ids)
    )
    images = {}
    for i, caption in CAPTIONS.items():
        image = Image.new("RGB", (64, 48), (200, 30, 30))
        image.info[TEXT_KEY] = caption
        images[i] = image
    parts: dict[str, object] = {
        "embedder": embedder,
        "store": store,
        "reasoner": KeywordReasoner(),
        "images": MemoryImageSource(images),
        "verifier": HashVerifier(),
        "evaluator": HashEvaluator(),
    }
    parts.update(overrides)
    return Components(**parts)  # type: ignore[arg-type]


def make_request(components: Components, text: str = "a red dress", **kw: object) -> RerankRequest:
    query = TextQuery(text=text)
    stage1 = run_stage1(components, query, params=PipelineSettings(limit=10))
    return RerankRequest(query=query, stage1=stage1, top_k=6, alpha=2, **kw)  # type: ignore[arg-type]


def ranking(result: object) -> list[tuple[str, int | None]]:
    return [(c.id, c.satisfied) for c in result.candidates]  # type: ignore[attr-defined]


# ------------------------------------------------------------------ in-process backend


def test_in_process_job_gives_the_same_result_as_a_direct_rerank() -> None:
    components = make_components()
    request = make_request(components)
    expected = rerank(components, request)
    backend = InProcessJobBackend(components, workers=2)
    try:
        ref = backend.submit(request)
        assert ref.state is JobState.QUEUED
        status = backend.wait(ref.id, 10)
    finally:
        backend.close()
    assert status.state is JobState.SUCCEEDED and status.progress == 1.0
    assert status.result is not None and status.result.stages == [1, 2, 3]
    assert ranking(status.result) == ranking(expected)
    assert ranking(status.result) != ranking(request.stage1)  # the rerank moved something
    assert status.result.job is not None and status.result.job.id == ref.id


def test_submit_is_idempotent_by_job_id_and_refuses_a_reused_id() -> None:
    components = make_components()
    backend = InProcessJobBackend(components)
    try:
        request = make_request(components)
        first = backend.submit(request, job_id="job-1")
        again = backend.submit(request, job_id="job-1")
        assert again.id == first.id == "job-1"
        backend.wait("job-1", 10)
        assert backend.store.get("job-1").attempts == 1
        with pytest.raises(JobConflictError) as err:
            backend.submit(make_request(components, "a blue hat"), job_id="job-1")
        assert err.value.status_code == 409
        with pytest.raises(InputError, match="not valid"):
            backend.submit(request, job_id="no spaces allowed")
    finally:
        backend.close()


def test_unknown_job_id_is_an_unknown_id_error() -> None:
    backend = InProcessJobBackend(make_components())
    try:
        for call in (backend.get, backend.cancel):
            with pytest.raises(UnknownIdError) as err:
                call("nope")
            assert err.value.status_code == 404
    finally:
        backend.close()


def test_running_job_shows_stage1_as_partial_result_and_cancel_stops_it() -> None:
    verifier = GatedVerifier(HashVerifier())
    components = make_components(verifier=verifier)
    request = make_request(components)
    backend = InProcessJobBackend(components, workers=1)
    try:
        ref = backend.submit(request)
        assert verifier.entered.wait(5)
        running = backend.get(ref.id)
        assert running.state is JobState.RUNNING and running.progress == pytest.approx(0.2)
        assert running.result is not None and running.result.stages == [1]
        assert ranking(running.result) == ranking(request.stage1)
        cancelled = backend.cancel(ref.id)
        assert cancelled.state is JobState.CANCELLED
        verifier.gate.set()
        final = backend.wait(ref.id, 5)
        time.sleep(0.1)  # let the runner reach its next stage boundary
        record = backend.store.get(ref.id)
    finally:
        verifier.gate.set()
        backend.close()
    assert final.state is JobState.CANCELLED
    assert record.result is None and record.result_writes == 1
    assert backend.cancel(ref.id).state is JobState.CANCELLED  # no-op on a final job


def test_failing_backend_ends_the_job_failed_with_the_reason() -> None:
    components = make_components()
    backend = InProcessJobBackend(components)
    try:
        ref = backend.submit(make_request(components, "explode the dress"))
        status = backend.wait(ref.id, 10)
    finally:
        backend.close()
    assert status.state is JobState.FAILED
    assert status.error is not None and "ModelBackendError" in status.error
    assert "unreachable" in status.error
    assert status.result is None


def test_new_job_ids_are_unique_and_checked() -> None:
    assert len({new_job_id() for _ in range(100)}) == 100
    assert new_job_id("client:42_a-b.c") == "client:42_a-b.c"
    with pytest.raises(InputError):
        new_job_id("x" * 65)


# ------------------------------------------------------------------ runner


def test_a_job_run_twice_writes_its_result_once() -> None:
    components = make_components()
    store = MemoryJobStore()
    record, _ = store.create(JobRecord.new("j", make_request(components)))
    first = execute_job(store, components, "j", worker="a", lease_s=5)
    second = execute_job(store, components, "j", worker="b", lease_s=5)
    assert (first, second) == (Outcome.SUCCEEDED, Outcome.SKIPPED)
    done = store.get("j")
    assert done.result_writes == 1 and done.attempts == 1 and done.worker == "a"


def test_transient_error_with_retry_releases_the_job_for_the_next_attempt() -> None:
    components = make_components()
    store = MemoryJobStore()
    store.create(JobRecord.new("j", make_request(components, "explode the hat")))
    with pytest.raises(ModelBackendError):
        execute_job(store, components, "j", worker="a", lease_s=5, retry=True)
    assert store.get("j").state is JobState.QUEUED
    assert execute_job(store, components, "j", worker="a", lease_s=5) is Outcome.FAILED
    assert store.get("j").attempts == 2


def test_unusable_model_output_is_not_transient() -> None:
    assert is_transient(ModelBackendError("timeout"))
    assert not is_transient(ModelOutputError("not yes or no"))
    assert not is_transient(InputError("bad"))
    components = make_components()
    store = MemoryJobStore()
    store.create(JobRecord.new("j", make_request(components, "garbage dress")))
    assert execute_job(store, components, "j", worker="a", lease_s=5, retry=True) is Outcome.FAILED
    assert "ModelOutputError" in (store.get("j").error or "")


def test_a_running_job_with_a_fresh_heartbeat_is_not_taken_over() -> None:
    store = MemoryJobStore()
    store.create(JobRecord.new("j", make_request(make_components())))
    assert store.claim("j", worker="a", lease_s=60) is not None
    assert store.claim("j", worker="b", lease_s=60) is None
    time.sleep(0.05)
    taken = store.claim("j", worker="b", lease_s=0.01)  # a's heartbeat is now stale
    assert taken is not None and taken.worker == "b" and taken.attempts == 2


# ------------------------------------------------------------------ reconciler


def test_reconciler_resends_stale_jobs_once_and_leaves_fresh_ones() -> None:
    store = MemoryJobStore()
    request = make_request(make_components())
    for job_id in ("queued-old", "running-silent", "running-alive", "done"):
        store.create(JobRecord.new(job_id, request))
    store.claim("running-silent", worker="dead", lease_s=1)
    store.claim("running-alive", worker="alive", lease_s=1)
    store.claim("done", worker="w", lease_s=1)
    store.finish("done", state=JobState.SUCCEEDED, result=request.stage1)
    time.sleep(0.15)
    store.heartbeat("running-alive")
    sent: list[str] = []
    reconciler = Reconciler(store, sent.append, requeue_after_s=0.1, lease_s=0.1)
    assert sorted(reconciler.run_once()) == ["queued-old", "running-silent"]
    assert store.get("running-silent").state is JobState.QUEUED
    assert reconciler.run_once() == []  # re-sent jobs are fresh again: idempotent
    assert sorted(sent) == ["queued-old", "running-silent"]


# ------------------------------------------------------------------ batching


class RecordingVerifier(Verifier):
    model_id = "recording"

    def __init__(self, *, delay_s: float = 0.0, fail_on: str | None = None) -> None:
        self.batches: list[list[tuple[str, str]]] = []
        self.delay_s = delay_s
        self.fail_on = fail_on

    def verify(self, items: Sequence[VerifyItem]) -> list[Answer]:
        self.batches.append([(it.image_id, it.question) for it in items])
        time.sleep(self.delay_s)
        if self.fail_on and any(self.fail_on in it.question for it in items):
            raise ModelBackendError("backend down")
        return [Answer(yes=True, raw=f"{it.image_id}|{it.question}") for it in items]


def _items(caller: int, n: int) -> list[VerifyItem]:
    image = Image.new("RGB", (2, 2))
    return [VerifyItem(f"c{caller}-img{i}", image, f"q{caller}-{i}?") for i in range(n)]


def test_concurrent_callers_share_backend_calls_and_get_their_own_answers_in_order() -> None:
    inner = RecordingVerifier()
    batching = BatchingVerifier(inner, max_batch=64, window_ms=100)
    barrier = threading.Barrier(8)

    def call(caller: int) -> list[str]:
        barrier.wait()
        return [a.raw for a in batching.verify(_items(caller, 5))]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(8)))
    batching.close()
    for caller, raws in enumerate(results):
        assert raws == [f"c{caller}-img{i}|q{caller}-{i}?" for i in range(5)]
    assert sum(len(b) for b in inner.batches) == 40
    assert len(inner.batches) < 8  # without batching: one call per caller
    assert batching.stats.calls == len(inner.batches) and batching.stats.items == 40


def test_batches_never_exceed_max_batch_and_split_large_requests() -> None:
    inner = RecordingVerifier()
    batching = BatchingVerifier(inner, max_batch=4, window_ms=0)
    answers = batching.verify(_items(0, 10))
    batching.close()
    assert [a.raw for a in answers] == [f"c0-img{i}|q0-{i}?" for i in range(10)]
    assert [len(b) for b in inner.batches] == [4, 4, 2]


def test_a_bad_item_fails_only_its_caller_even_in_a_shared_batch() -> None:
    inner = RecordingVerifier(fail_on="boom")
    batching = BatchingVerifier(inner, max_batch=64, window_ms=200)
    image = Image.new("RGB", (2, 2))
    barrier = threading.Barrier(2)

    def call(question: str) -> list[Answer]:
        barrier.wait()
        return batching.verify([VerifyItem("x", image, question)] * 2)

    with ThreadPoolExecutor(2) as pool:
        bad, good = pool.submit(call, "boom?"), pool.submit(call, "fine?")
        with pytest.raises(ModelBackendError):
            bad.result(5)
        assert [a.raw for a in good.result(5)] == ["x|fine?", "x|fine?"]
    batching.close()
    assert len(inner.batches[0]) == 4  # first shared, then each caller alone
    assert sorted(len(b) for b in inner.batches[1:]) == [2, 2]
    assert batching.verify([]) == []


def test_concurrent_in_process_jobs_share_verifier_calls() -> None:
    inner = HashVerifier(delay_s=0.05)
    batching = BatchingVerifier(inner, max_batch=256, window_ms=50)
    components = make_components(verifier=batching)
    texts = ["a red dress", "a blue hat", "a green shirt", "a black dress"]
    expected = [ranking(rerank(make_components(), make_request(components, t))) for t in texts]
    backend = InProcessJobBackend(components, workers=4)
    try:
        refs = [backend.submit(make_request(components, t)) for t in texts]
        results = [backend.wait(r.id, 10) for r in refs]
    finally:
        backend.close()
        batching.close()
    assert [ranking(s.result) for s in results] == expected
    assert inner.calls < len(texts)


# ------------------------------------------------------------------ factory


def test_job_layer_is_built_from_settings() -> None:
    from imagescope.errors import ConfigError
    from imagescope.jobs.factory import (
        build_job_backend,
        job_components,
        load_components_hook,
        with_components_hook,
    )
    from imagescope.settings import JobSettings, Settings

    hook = "imagescope.jobs.fakes:scripted_components"
    settings = Settings(_env_file=None, jobs=JobSettings(components_hook=hook, batch_size=7))  # type: ignore[call-arg]
    hooked = with_components_hook(make_components(verifier=None), settings)
    assert hooked.verifier is not None and hooked.verifier.model_id == "scripted-verifier"
    wrapped = job_components(hooked, settings)
    assert isinstance(wrapped.verifier, BatchingVerifier) and wrapped.verifier.max_batch == 7
    assert job_components(wrapped, settings).verifier is wrapped.verifier  # never wrapped twice
    backend = build_job_backend(settings, wrapped)
    try:
        assert isinstance(backend, InProcessJobBackend)
    finally:
        backend.close()
        wrapped.verifier.close()
    for bad in ("no_colon", "imagescope.nope:f", "imagescope.jobs.fakes:missing"):
        with pytest.raises(ConfigError):
            load_components_hook(bad)
