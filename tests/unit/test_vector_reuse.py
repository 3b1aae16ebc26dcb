"""Stages 2-3 on stored image vectors, cached text vectors (embedded only up to
the longest prompt) and one evaluator call give exactly the rankings of the
path that encodes every candidate and text again, over the whole context."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image

from imagescope.ingest.runner import ingest
from imagescope.ingest.sources import read_table
from imagescope.models.base import Embedder, EvaluationItem, Vectors, VerifyItem
from imagescope.models.clip_judge import ClipEvaluator, ClipVerifier, clip_judges
from imagescope.models.rule_reasoner import RuleReasoner
from imagescope.models.text_cache import TextVectorCache, cache_for
from imagescope.pipeline.context import Components, StoreImageSource
from imagescope.pipeline.rerank import rerank
from imagescope.pipeline.stage1 import run_stage1
from imagescope.schemas import RerankRequest, SearchResult
from imagescope.settings import ImageLimits, PipelineSettings
from imagescope.store.memory import MemoryStore
from imagescope.synthetic.catalog import make_catalog, write_catalog
from imagescope.synthetic.queries import make_queries
from imagescope.synthetic.train import load_synth_embedder

pytestmark = pytest.mark.unit

N_ITEMS = 80
TOP_K = 12
ALPHA = 4


class CountingEmbedder(Embedder):
    """Wraps an embedder and counts the texts and images it encodes."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self.texts = 0
        self.images = 0

    def embed_texts(self, texts: Any) -> Vectors:
        self.texts += len(texts)
        return self.inner.embed_texts(texts)

    def embed_images(self, images: Any) -> Vectors:
        self.images += len(images)
        return self.inner.embed_images(images)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> tuple[MemoryStore, ImageLimits, Embedder]:
    folder = tmp_path_factory.mktemp("reuse")
    csv_path = write_catalog(folder / "catalog", n=N_ITEMS, seed=7)
    limits = ImageLimits(allowed_roots=[folder.resolve()])
    embedder = load_synth_embedder()
    store = MemoryStore()
    report = ingest(
        read_table(csv_path), store=store, embedder=embedder, limits=limits, progress=False
    )
    report.raise_for_failures()
    return store, limits, embedder


def _components(
    store: MemoryStore, limits: ImageLimits, embedder: Embedder, *, reuse: bool
) -> Components:
    """The CPU judges; ``reuse=False`` is the path that re-encodes everything."""
    verifier, evaluator = clip_judges(embedder, reuse=reuse)
    return Components(
        embedder=embedder,
        store=store,
        reasoner=RuleReasoner(),
        images=StoreImageSource(store, limits),
        verifier=verifier,
        evaluator=evaluator,
    )


def _run(components: Components, query: Any, *, early_exit: bool) -> SearchResult:
    first = run_stage1(components, query, params=PipelineSettings(limit=30))
    request = RerankRequest(
        query=query, stage1=first, stages=[2, 3], top_k=TOP_K, alpha=ALPHA, early_exit=early_exit
    )
    return rerank(components, request)


def _summary(result: SearchResult) -> list[tuple[Any, ...]]:
    return [
        (
            c.id,
            c.satisfied,
            tuple((v.question, v.answer) for v in c.verdicts),
            None if c.evaluation is None else (c.evaluation.accepted, c.evaluation.reason),
        )
        for c in result.candidates
    ]


@pytest.mark.slow  # runs stages 1-3 with the CLIP judges over an 80-image gallery
@pytest.mark.parametrize("early_exit", [True, False])
def test_vector_reuse_ranks_exactly_as_reencoding(
    gallery: tuple[MemoryStore, ImageLimits, Embedder], early_exit: bool
) -> None:
    store, limits, embedder = gallery
    assert embedder.trim_texts  # the new path runs texts only up to the longest prompt
    # The baseline embeds texts through open_clip's encode_text over the whole context.
    old_embedder = CountingEmbedder(embedder.untrimmed())
    new_embedder = CountingEmbedder(embedder)
    old = _components(store, limits, old_embedder, reuse=False)
    new = _components(store, limits, new_embedder, reuse=True)
    queries = make_queries(make_catalog(N_ITEMS, seed=7), n_per_kind=4, seed=11)
    assert {q.kind for q in queries} >= {"text", "composed"}
    moved = 0
    for query in queries:
        before = _run(old, query.query, early_exit=early_exit)
        after = _run(new, query.query, early_exit=early_exit)
        assert _summary(after) == _summary(before), query.id
        moved += sum(c.stage1_rank != rank for rank, c in enumerate(after.candidates, 1))
    assert moved > 0  # stages 2-3 did reorder something, so the comparison has teeth
    # The reuse path encoded no candidate image and fewer texts.
    assert new_embedder.images < old_embedder.images
    assert new_embedder.texts < old_embedder.texts


def test_evaluate_each_equals_one_call_per_item(
    gallery: tuple[MemoryStore, ImageLimits, Embedder],
) -> None:
    store, _, embedder = gallery
    evaluator = ClipEvaluator(embedder, text_cache=TextVectorCache(max_items=0))
    images = [Image.new("RGB", (64, 64), colour) for colour in ("red", "blue", "green")]
    reference = Image.new("RGB", (64, 64), "white")
    items = [
        EvaluationItem(f"c{n}", image, "make the square blue", reference=reference)
        for n, image in enumerate(images)
    ]
    one_by_one = [evaluator.evaluate([item])[0] for item in items]
    assert evaluator.evaluate_each(items) == one_by_one


def test_stored_vectors_replace_the_pixels(
    gallery: tuple[MemoryStore, ImageLimits, Embedder],
) -> None:
    store, limits, embedder = gallery
    record = store.get([make_catalog(N_ITEMS, seed=7)[3].id], with_vectors=True)[0]
    assert record.image_vector is not None
    real = StoreImageSource(store, limits).by_id(record.id)
    blank = Image.new("RGB", (64, 64), "black")
    question = "Is the shape red?"
    counting = CountingEmbedder(embedder)
    scaled = record.image_vector * 3.0  # any length: the judge makes it unit again
    from_vector = ClipVerifier(counting).verify([VerifyItem("x", blank, question, scaled)])
    evaluated = ClipEvaluator(counting).evaluate_each(
        [EvaluationItem("x", blank, "make it red", candidate_vector=scaled)]
    )
    assert counting.images == 0
    from_pixels = ClipVerifier(embedder).verify([VerifyItem("x", real, question)])
    assert from_vector[0].yes == from_pixels[0].yes
    assert from_vector[0].p_yes == pytest.approx(from_pixels[0].p_yes, abs=1e-3)
    again = ClipEvaluator(embedder).evaluate([EvaluationItem("x", real, "make it red")])
    assert evaluated == again


def test_text_cache_is_lru_by_model_and_text(
    gallery: tuple[MemoryStore, ImageLimits, Embedder],
) -> None:
    _, _, embedder = gallery
    counting = CountingEmbedder(embedder)
    cache = TextVectorCache(max_items=2)
    first = cache.embed(counting, ["a", "b", "a"])
    assert counting.texts == 2 and first.shape == (3, embedder.dim)
    assert np.array_equal(first[0], first[2])
    cache.embed(counting, ["a"])  # hit; "b" is now the least recently used
    cache.embed(counting, ["c"])  # evicts "b"
    assert counting.texts == 3 and len(cache) == 2
    cache.embed(counting, ["b"])
    assert counting.texts == 4 and (cache.hits, cache.misses) == (1, 4)
    assert cache.embed(counting, []).shape == (0, embedder.dim)
    assert cache_for(counting) is cache_for(counting)
    assert cache_for(counting) is not cache_for(CountingEmbedder(embedder))


def test_text_cache_rejects_negative_size() -> None:
    with pytest.raises(Exception, match="max_items"):
        TextVectorCache(max_items=-1)
