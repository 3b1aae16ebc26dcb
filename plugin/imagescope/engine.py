"""The engine: one object that runs the ImageScope method over configured backends.

``Engine.search`` runs stage 1 and, inline, the requested later stages; the
job layer (``imagescope.jobs``) runs stages 2-3 asynchronously through
``rerank_request`` + ``pipeline.rerank.rerank``.
"""

from __future__ import annotations

from collections.abc import Sequence

from imagescope.errors import InputError
from imagescope.models.base import Embedder
from imagescope.models.factory import (
    build_captioner,
    build_embedder,
    build_evaluator,
    build_reasoner,
    build_verifier,
)
from imagescope.pipeline.context import Components, MemoryAnswerCache, StoreImageSource
from imagescope.pipeline.rerank import rerank
from imagescope.pipeline.stage1 import RetrievalParams, run_stage1
from imagescope.schemas import Query, RerankRequest, SearchResult
from imagescope.settings import ImageLimits, PipelineSettings, Settings
from imagescope.store.base import VectorStore
from imagescope.store.factory import build_store


def check_stages(stages: Sequence[int]) -> list[int]:
    wanted = sorted(set(stages))
    if not wanted or any(s not in (1, 2, 3) for s in wanted) or wanted[0] != 1:
        raise InputError(f"stages must include 1 and be among 1, 2, 3; got {list(stages)}")
    return wanted


class Engine:
    def __init__(self, components: Components, pipeline: PipelineSettings) -> None:
        self.components = components
        self.pipeline = pipeline

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        store: VectorStore | None = None,
        limits: ImageLimits | None = None,
    ) -> Engine:
        """Builds the configured backends; ``embedder``/``store``/``limits`` override them.

        The store is created or validated against the embedder's dimension
        (``DimensionMismatchError`` when they disagree).
        """
        embedder = embedder or build_embedder(settings.models.embedder)
        store = store or build_store(settings.store)
        store.ensure(embedder.dim)
        models = settings.models
        components = Components(
            embedder=embedder,
            store=store,
            reasoner=build_reasoner(models.reasoner),
            images=StoreImageSource(store, limits or settings.images),
            verifier=build_verifier(models.verifier, embedder),
            evaluator=build_evaluator(models.evaluator, embedder),
            captioner=build_captioner(models.captioner),
            cache=MemoryAnswerCache(),
        )
        return cls(components, settings.pipeline)

    def retrieval_params(self, *, limit: int | None = None) -> RetrievalParams:
        p = self.pipeline
        return RetrievalParams(
            tau=p.tau, limit=limit or p.limit, num_candidates=max(p.num_candidates, p.top_k)
        )

    def stage1(self, query: Query, *, limit: int | None = None) -> SearchResult:
        return run_stage1(self.components, query, params=self.retrieval_params(limit=limit))

    def rerank_request(
        self,
        query: Query,
        stage1: SearchResult,
        *,
        stages: Sequence[int] = (2, 3),
        top_k: int | None = None,
        alpha: int | None = None,
        webhook_url: str | None = None,
    ) -> RerankRequest:
        return RerankRequest(
            query=query,
            stage1=stage1,
            stages=[s for s in stages if s in (2, 3)],
            top_k=top_k or self.pipeline.top_k,
            alpha=self.pipeline.alpha if alpha is None else alpha,
            early_exit=self.pipeline.early_exit,
            webhook_url=webhook_url,
        )

    def search(
        self,
        query: Query,
        *,
        stages: Sequence[int] = (1, 2, 3),
        limit: int | None = None,
        top_k: int | None = None,
        alpha: int | None = None,
    ) -> SearchResult:
        """All requested stages inline, in this process."""
        wanted = check_stages(stages)
        first = self.stage1(query, limit=limit)
        if wanted == [1]:
            return first
        request = self.rerank_request(query, first, stages=wanted, top_k=top_k, alpha=alpha)
        return rerank(self.components, request)

    def close(self) -> None:
        self.components.store.close()
