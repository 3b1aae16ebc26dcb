"""The method's rules, pinned on fakes and the exact in-memory store."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imagescope.errors import EmptyQueryError, ModelOutputError, UnknownIdError
from imagescope.models.fakes import (
    TEXT_KEY,
    FakeEmbedder,
    FakeEvaluator,
    FakeReasoner,
    FakeVerifier,
)
from imagescope.pipeline.context import Components, MemoryAnswerCache, MemoryImageSource
from imagescope.pipeline.fusion import fuse_scores, fused_search
from imagescope.pipeline.rerank import rerank
from imagescope.pipeline.stage1 import run_stage1
from imagescope.pipeline.stage2 import rank_by_satisfied
from imagescope.pipeline.stage3 import evaluate_top
from imagescope.schemas import (
    Candidate,
    ComposedQuery,
    DialogQuery,
    DialogTurn,
    ImageRef,
    Intent,
    Proposition,
    RerankRequest,
    TextQuery,
    Trace,
)
from imagescope.settings import PipelineSettings
from imagescope.store.base import CatalogRecord
from imagescope.store.memory import MemoryStore

pytestmark = pytest.mark.unit

CATALOG = {
    "a": "a red dress with long sleeves",
    "b": "a blue dress with short sleeves",
    "c": "a red shirt",
    "d": "a green hat",
    "e": "a red dress on a chair",
}


def _image(text: str) -> Image.Image:
    image = Image.new("RGB", (4, 4))
    image.info[TEXT_KEY] = text
    return image


def make_components(**overrides: object) -> Components:
    embedder = FakeEmbedder(dim=64)
    store = MemoryStore()
    store.ensure(64)
    images = {i: _image(t) for i, t in CATALOG.items()}
    ids = list(CATALOG)
    img_vecs = embedder.embed_images([images[i] for i in ids])
    cap_vecs = embedder.embed_texts([CATALOG[i] for i in ids])
    store.upsert(
        CatalogRecord(
            id=i,
            image_vector=img_vecs[n],
            caption_vector=cap_vecs[n],
            caption=CATALOG[i],
            metadata={"colour": CATALOG[i].split()[1]},
        )
        for n, i in enumerate(ids)
    )
    parts: dict[str, object] = {
        "embedder": embedder,
        "store": store,
        "reasoner": FakeReasoner(),
        "images": MemoryImageSource(images),
    }
    parts.update(overrides)
    return Components(**parts)  # type: ignore[arg-type]


def _cands(ids: list[str], satisfied: list[int] | None = None) -> list[Candidate]:
    sat = satisfied or [0] * len(ids)
    return [
        Candidate(id=i, score=1.0 - n / 10, stage1_rank=n + 1, satisfied=s)
        for n, (i, s) in enumerate(zip(ids, sat, strict=True))
    ]


# ------------------------------------------------------------------ stage 1


def test_fuse_scores_is_the_method_formula_averaged_over_descriptions() -> None:
    rng = np.random.default_rng(0)
    t = rng.standard_normal((3, 8)).astype(np.float32)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    img = rng.standard_normal((5, 8)).astype(np.float32)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    cap = rng.standard_normal((5, 8)).astype(np.float32)
    cap /= np.linalg.norm(cap, axis=1, keepdims=True)
    tau = 0.3
    fused, img_part, cap_part = fuse_scores(t, img, cap, tau=tau)
    for n in range(5):
        per_desc = [(1 - tau) * t[j] @ img[n] + tau * t[j] @ cap[n] for j in range(3)]
        assert fused[n] == pytest.approx(np.mean(per_desc), abs=1e-6)
        assert img_part[n] == pytest.approx(np.mean(t @ img[n]), abs=1e-6)
        assert cap_part[n] == pytest.approx(np.mean(t @ cap[n]), abs=1e-6)


def test_tau_zero_is_plain_clip_and_tau_one_is_caption_only() -> None:
    comps = make_components()
    q = comps.embedder.embed_texts(["red dress", "dress with sleeves"])
    for tau, attr in ((0.0, "image_score"), (1.0, "caption_score")):
        hits = fused_search(comps.store, q, limit=5, tau=tau, num_candidates=5)
        assert [h.score for h in hits] == pytest.approx([getattr(h, attr) for h in hits])
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_stage1_ranks_by_fused_score_and_applies_filters_inside_search() -> None:
    comps = make_components()
    result = run_stage1(comps, TextQuery(text="red dress"), params=PipelineSettings(limit=5))
    ids = [c.id for c in result.candidates]
    assert set(ids[:2]) == {"a", "e"}
    assert [c.stage1_rank for c in result.candidates] == list(range(1, len(ids) + 1))
    filtered = run_stage1(
        comps,
        TextQuery(text="red dress", filters={"colour": "blue"}),
        params=PipelineSettings(limit=5),
    )
    assert [c.id for c in filtered.candidates] == ["b"]
    assert result.trace.timings["retrieve"] >= 0
    assert result.trace.models["embedder"] == "fake-embedder-64"


def test_reasoner_failure_falls_back_to_instruction_plus_reference_caption() -> None:
    comps = make_components(reasoner=FakeReasoner(fail_with=ModelOutputError("not json")))
    query = ComposedQuery(reference=ImageRef(id="b"), instruction="make it red")
    result = run_stage1(comps, query, params=PipelineSettings(limit=3))
    assert result.trace.intent_fallback is True
    assert result.trace.descriptions == ["a blue dress with short sleeves, make it red"]
    assert any("fallback" in n for n in result.trace.notes)
    assert "b" not in [c.id for c in result.candidates]  # the reference is excluded


def test_empty_query_and_unknown_reference_are_clear_errors() -> None:
    comps = make_components()
    with pytest.raises(EmptyQueryError):
        run_stage1(comps, DialogQuery(caption=" . "), params=PipelineSettings())
    query = ComposedQuery(reference=ImageRef(id="nope"), instruction="make it red")
    with pytest.raises(UnknownIdError):
        run_stage1(comps, query, params=PipelineSettings())


def test_dialog_turns_reach_the_reasoner_as_turns() -> None:
    reasoner = FakeReasoner()
    comps = make_components(reasoner=reasoner)
    query = DialogQuery(
        caption="a dress",
        turns=[
            DialogTurn(question="what colour?", answer="red"),
            DialogTurn(question="sleeves?", answer="long"),
        ],
    )
    result = run_stage1(comps, query, params=PipelineSettings(limit=3))
    # Round r: the caption and the first r turns (the fake writes them as one text).
    assert reasoner.intent_calls == [
        ("a dress", None),
        ("a dress. what colour? red", None),
        ("a dress. what colour? red. sleeves? long", None),
    ]
    assert len(result.trace.dialog_rounds) == 3
    assert result.trace.descriptions[-1] == "a dress. what colour? red. sleeves? long"


# ------------------------------------------------------------------ stage 2


def test_rank_by_satisfied_is_stable_on_ties() -> None:
    ranked = rank_by_satisfied(_cands(["p", "q", "r", "s", "t"], [1, 2, 1, 2, 0]))
    assert [c.id for c in ranked] == ["q", "s", "p", "r", "t"]


def _rerank_request(comps: Components, query: TextQuery, **kw: object) -> RerankRequest:
    stage1 = run_stage1(comps, query, params=PipelineSettings(limit=5))
    knobs: dict[str, object] = {"top_k": 20, "alpha": 3, **kw}
    return RerankRequest(query=query, stage1=stage1, **knobs)  # type: ignore[arg-type]


def test_stage2_reorders_top_k_only_and_merges_back_the_rest() -> None:
    props = [
        Proposition(question="Is it red?"),
        Proposition(question="Is there a hat?", expected=False),
    ]
    truth = {"c": {"Is it red?"}, "a": set(), "e": {"Is it red?"}}
    verifier = FakeVerifier(lambda i, q: q in truth.get(i, set()))
    comps = make_components(reasoner=FakeReasoner(propositions=props), verifier=verifier)
    request = _rerank_request(comps, TextQuery(text="red dress"), stages=[2], top_k=3)
    before = [c.id for c in request.stage1.candidates]
    result = rerank(comps, request)
    top3 = before[:3]
    expected_top = sorted(top3, key=lambda i: -(("Is it red?" in truth.get(i, set())) + 1))
    assert [c.id for c in result.candidates[:3]] == expected_top
    assert [c.id for c in result.candidates[3:]] == before[3:]
    assert result.stages == [1, 2]
    assert len(verifier.batches) == 1 and len(verifier.batches[0]) == 3 * 2
    first = result.candidates[0]
    assert first.satisfied == 2 and all(v.satisfied for v in first.verdicts)
    assert "2/2 propositions hold" in first.reason


def test_answer_cache_serves_repeated_questions_and_shows_in_trace() -> None:
    props = [Proposition(question="Is it red?")]
    verifier = FakeVerifier(lambda i, q: i == "e")
    comps = make_components(
        reasoner=FakeReasoner(propositions=props), verifier=verifier, cache=MemoryAnswerCache()
    )
    request = _rerank_request(comps, TextQuery(text="red dress"), stages=[2], top_k=3)
    first = rerank(comps, request)
    second = rerank(comps, request)
    assert len(verifier.batches) == 1
    assert second.trace.costs["verifier"].cache_hits == 3
    assert all(v.cached for c in second.candidates[:3] for v in c.verdicts)
    assert [c.id for c in first.candidates] == [c.id for c in second.candidates]


# ------------------------------------------------------------------ stage 3


def test_stage3_promotes_first_accepted_and_stops_there() -> None:
    evaluator = FakeEvaluator(accept={"b", "c"})
    comps = make_components(evaluator=evaluator)
    ranked = _cands(["a", "b", "c", "d"])
    out = evaluate_top(
        comps, ranked, alpha=3, instruction="x", reference=None, early_exit=True, trace=Trace()
    )
    assert [c.id for c in out] == ["b", "a", "c", "d"]
    assert evaluator.asked == ["a", "b"]
    assert out[0].evaluation is not None and out[0].evaluation.accepted


def test_stage3_without_early_exit_moves_all_accepted_in_order() -> None:
    evaluator = FakeEvaluator(accept={"b", "c", "d"})
    comps = make_components(evaluator=evaluator)
    out = evaluate_top(
        comps,
        _cands(["a", "b", "c", "d"]),
        alpha=3,
        instruction="x",
        reference=None,
        early_exit=False,
        trace=Trace(),
    )
    # d is accepted by the evaluator but lies beyond alpha: it is never asked.
    assert [c.id for c in out] == ["b", "c", "a", "d"]
    assert evaluator.asked == ["a", "b", "c"]


def test_full_rerank_records_stages_timings_and_model_ids() -> None:
    comps = make_components(
        reasoner=FakeReasoner(
            intent=Intent(descriptions=["red", "red dress", "a red dress"]),
            propositions=[Proposition(question="Is it red?")],
        ),
        verifier=FakeVerifier(lambda i, q: False),
        evaluator=FakeEvaluator(accept={"c"}),
    )
    request = _rerank_request(comps, TextQuery(text="red dress"), top_k=5, alpha=5)
    result = rerank(comps, request)
    assert result.stages == [1, 2, 3]
    assert result.candidates[0].id == "c"
    assert {"intent", "retrieve", "propositions", "verify", "evaluate"} <= set(result.trace.timings)
    assert set(result.trace.models) == {"embedder", "reasoner", "verifier", "evaluator"}
    assert result.trace.costs["evaluator"].calls >= 1
