"""The engine: one object that runs the ImageScope method over configured backends.

Build one with :func:`imagescope.open` (``imagescope.wiring``), the only place
that assembles the backends from settings. Everything outside the engine (the
API, the CLI, eval, the demo) calls its methods; nothing else reaches into its
components. ``Engine.search`` runs stage 1 and, inline, the requested later
stages; the job layer (``imagescope.jobs``) runs stages 2-3 asynchronously
from the ``RerankRequest`` that :meth:`Engine.rerank_request` builds.

An engine is a context manager: ``with imagescope.open() as engine: ...``
closes its store on exit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from imagescope.closing import Closing
from imagescope.errors import ConfigError, InputError
from imagescope.pipeline.context import Components
from imagescope.pipeline.fusion import ScoredHit, fused_search
from imagescope.pipeline.rerank import rerank
from imagescope.pipeline.stage1 import fallback_intent, instruction_of, run_stage1
from imagescope.schemas import (
    Candidate,
    ComposedQuery,
    ImageRef,
    Query,
    RerankRequest,
    SearchResult,
    TextQuery,
    Trace,
)
from imagescope.settings import ImageLimits, PipelineSettings
from imagescope.stages import STAGES, check_rerank_stages, check_stages

__all__ = ["STAGES", "Engine", "as_query", "check_rerank_stages", "check_stages"]

if TYPE_CHECKING:
    from PIL.Image import Image

    from imagescope.ingest.runner import IngestReport
    from imagescope.ingest.sources import IngestItem
    from imagescope.models.base import Captioner
    from imagescope.store.base import CatalogRecord


def as_query(query: Query | str) -> Query:
    """A plain string is a text query."""
    return TextQuery(text=query) if isinstance(query, str) else query


class Engine(Closing):
    """The method over one set of components and one ``PipelineSettings``."""

    def __init__(self, components: Components, pipeline: PipelineSettings) -> None:
        self.components = components
        self.pipeline = pipeline

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self.components.store.close()

    # ------------------------------------------------------------------ search

    def request_settings(
        self, *, limit: int | None = None, top_k: int | None = None, alpha: int | None = None
    ) -> PipelineSettings:
        """The pipeline settings with one request's overrides (``InputError`` if they clash)."""
        return self.pipeline.for_request(limit=limit, top_k=top_k, alpha=alpha)

    def stage1(self, query: Query | str, *, limit: int | None = None) -> SearchResult:
        """Stage 1 (reasoning + fused k-NN): the first ``limit`` candidates."""
        params = self.request_settings(limit=limit)
        return run_stage1(self.components, as_query(query), params=params)

    def rerank_request(
        self,
        query: Query | str,
        stage1: SearchResult,
        *,
        stages: Sequence[int] = (2, 3),
        top_k: int | None = None,
        alpha: int | None = None,
        webhook_url: str | None = None,
    ) -> RerankRequest:
        """What a rerank job needs; ``top_k``/``alpha`` default to the settings.

        Raises ``InputError`` when ``alpha`` exceeds ``top_k`` or a stage is not 2/3.
        """
        knobs = self.request_settings(top_k=top_k, alpha=alpha)
        return RerankRequest(
            query=as_query(query),
            stage1=stage1,
            stages=check_rerank_stages(stages),
            top_k=knobs.top_k,
            alpha=knobs.alpha,
            early_exit=knobs.early_exit,
            webhook_url=webhook_url,
        )

    def rerank(self, request: RerankRequest) -> SearchResult:
        """Stages 2-3 of ``request`` inline, in this process."""
        return rerank(self.components, request)

    def search(
        self,
        query: Query | str,
        *,
        stages: Sequence[int] = STAGES,
        limit: int | None = None,
        top_k: int | None = None,
        alpha: int | None = None,
    ) -> SearchResult:
        """All requested stages inline, in this process (a string is a text query)."""
        wanted = check_stages(stages)
        self.request_settings(limit=limit, top_k=top_k, alpha=alpha)
        first = self.stage1(query, limit=limit)
        if wanted == [1]:
            return first
        request = self.rerank_request(query, first, stages=wanted, top_k=top_k, alpha=alpha)
        return self.rerank(request)

    def staged(self, query: Query | str, *, stages: Sequence[int] = STAGES) -> list[SearchResult]:
        """Stage 1, then each requested later stage on the previous stage's result.

        One pass gives the ranking after each stage (eval scores them all);
        stage 3 on the stage-2 result is exactly what a [2, 3] rerank does.
        """
        wanted = check_stages(stages)
        results = [self.stage1(query)]
        for stage in wanted[1:]:
            request = self.rerank_request(query, results[-1], stages=[stage])
            results.append(self.rerank(request))
        return results

    def clip_baseline(self, query: Query | str, *, limit: int | None = None) -> SearchResult:
        """Plain CLIP, the reference the method is measured against: the raw query text
        (after the reference caption, for a composed query) against image vectors only;
        no reasoning, no caption fusion, no filters. The reference never ranks."""
        query = as_query(query)
        limit = self.request_settings(limit=limit).limit
        store, text = self.components.store, instruction_of(query)
        exclude: set[str] = set()
        if isinstance(query, ComposedQuery) and query.reference.id:
            exclude = {query.reference.id}
            records = store.get([query.reference.id])
            text = fallback_intent(text, records[0].caption if records else None).descriptions[0]
        vector = self.components.embedder.embed_texts([text])
        hits = store.knn("image", vector, k=limit + len(exclude))[0] if store.dim else []
        kept = [h for h in hits if h.id not in exclude][:limit]
        candidates = [
            Candidate(id=h.id, score=h.score, image_score=h.score, stage1_rank=rank)
            for rank, h in enumerate(kept, start=1)
        ]
        return SearchResult(candidates=candidates, trace=Trace(models=self.model_ids()))

    # ------------------------------------------------------------------ catalog

    def rank_catalog(self, text: str, *, depth: int) -> list[ScoredHit]:
        """Catalog images by the fused stage-1 score for ``text`` taken literally.

        No reasoner call: the text is the only description. An empty text gives
        a stable, arbitrary order (used to browse and to sample the catalog).
        """
        vectors = self.components.embedder.embed_texts([text])
        return fused_search(
            self.components.store,
            np.asarray(vectors, dtype=np.float32),
            limit=depth,
            tau=self.pipeline.tau,
            num_candidates=max(depth, self.pipeline.num_candidates),
        )

    def count(self) -> int:
        """Images in the catalog."""
        return self.components.store.count()

    def records(self, ids: Sequence[str]) -> list[CatalogRecord]:
        """The catalog records of ``ids`` that exist, in the order asked (no vectors)."""
        return self.components.store.get(list(ids))

    def metadata_fields(self) -> set[str]:
        """The metadata fields filters may use."""
        return self.components.store.metadata_fields()

    def image(self, image_id: str) -> Image:
        """A catalog image (``UnknownIdError`` for an id not in the catalog)."""
        return self.components.images.by_id(image_id)

    def load_image(self, ref: ImageRef) -> Image:
        """A query's reference image (catalog id, path or URL) through the image guards."""
        return self.components.images.load(ref)

    def ids_by_uri(self, uris: Sequence[str]) -> dict[str, str]:
        """uri -> id of the stored records with those uris (``InputError`` when the
        store cannot look records up by uri)."""
        lookup = getattr(self.components.store, "ids_by_uri", None)
        if lookup is None:
            raise InputError("this catalog's store cannot look records up by uri; send ids")
        found: dict[str, str] = lookup(list(uris))
        return found

    def count_without_caption(self) -> int:
        """Records that have no ImageScope caption yet (OpenSearch stores)."""
        count: int = self._store_scan("count_without_caption")()
        return count

    def ids_without_caption(self, *, batch: int = 500) -> Iterator[list[str]]:
        """Ids of records without an ImageScope caption, ``batch`` at a time."""
        ids: Iterator[list[str]] = self._store_scan("ids_without_caption")(batch=batch)
        return ids

    def _store_scan(self, name: str) -> Any:
        scan = getattr(self.components.store, name, None)
        if scan is None:
            kind = type(self.components.store).__name__
            raise ConfigError(f"the {kind} store cannot scan for records without a caption")
        return scan

    def model_ids(self) -> dict[str, str]:
        """Role -> model id of every configured model."""
        return self.components.model_ids()

    def ingest(
        self,
        items: Iterable[IngestItem],
        *,
        limits: ImageLimits,
        batch_size: int = 32,
        skip_existing: bool = False,
        progress: bool = True,
        **options: Any,
    ) -> IngestReport:
        """Caption (when a captioner is set), embed and store ``items``.

        ``options`` go to :func:`imagescope.ingest.runner.ingest` (``manifest``,
        ``models``, ``workers``...).
        """
        from imagescope.ingest.runner import ingest

        c = self.components
        return ingest(
            items,
            store=c.store,
            embedder=c.embedder,
            captioner=c.captioner,
            limits=limits,
            batch_size=batch_size,
            skip_existing=skip_existing,
            progress=progress,
            **options,
        )

    def check_captioner(self) -> Captioner:
        """The configured captioner (``ConfigError`` naming the setting when none is)."""
        if self.components.captioner is None:
            raise ConfigError(
                "no captioner configured: set IMAGESCOPE_MODELS__CAPTIONER__KIND "
                "(openai or vllm) and its endpoint or model"
            )
        return self.components.captioner

    def backfill_captions(
        self,
        ids: Iterable[str],
        *,
        limits: ImageLimits,
        batch_size: int = 32,
        overwrite: bool = False,
        progress: bool = True,
    ) -> IngestReport:
        """Caption stored records ``ids`` and write captions + caption vectors
        (``ConfigError`` when no captioner is configured)."""
        from imagescope.ingest.runner import backfill_captions

        c = self.components
        return backfill_captions(
            c.store,
            ids,
            captioner=self.check_captioner(),
            embedder=c.embedder,
            limits=limits,
            batch_size=batch_size,
            overwrite=overwrite,
            progress=progress,
        )
