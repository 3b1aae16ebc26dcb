"""The OpenSearch k-NN catalog: :class:`OpenSearchStore` implements ``VectorStore``.

What runs where:
- In OpenSearch: the approximate nearest-neighbour search (HNSW; Lucene engine
  by default, faiss as an option), one ``knn`` query per query vector, all of
  them in one ``_msearch`` request, with the user's filters *inside* the knn
  clause (efficient filtering: the engine searches the graph under the filter,
  or exactly when the filter is very selective, so ``k`` matching hits come
  back whenever ``k`` matching records exist); ``settings.ef_search`` goes
  with each query (``method_parameters.ef_search``, at least ``k``). Also
  bulk writes, partial updates (caption backfill), alias moves and
  server-side ``_reindex``.
- In Python: checking vectors (dimension, NaN/inf) and filters (against the
  fields the index mapping declares) before anything is sent, turning the
  plugin's scores back into the exact similarity of the field's space (cosine
  for cosinesimil whatever the vectors' lengths, inner product, ``1 - d^2/2``
  for l2; ``mappings.score_to_similarity``), the final order (score
  descending, id ascending), and stage-1 fusion: ``imagescope.pipeline.fusion``
  calls :meth:`OpenSearchStore.knn` on both vector fields to gather a candidate
  pool, fetches the pool's vectors with :meth:`OpenSearchStore.get` and computes
  the method's fused score exactly with numpy.

Read-only by default: :meth:`~OpenSearchStore.ensure` only validates (a name
that resolves to no index is a ``ConfigError`` naming the closest existing
ones); searching never changes a mapping, a setting or a document. ImageScope's
own searches send ``search_pipeline=_none`` so an index's default search
pipeline never rewrites them.

Index naming: ``settings.index`` is an *alias*. :meth:`~OpenSearchStore.create_index`
creates ``<alias>-v1`` behind it; :meth:`~OpenSearchStore.reindex` creates the
next generation ``<alias>-v<N+1>`` (e.g. with new HNSW parameters), copies the
documents server-side and moves the alias in one atomic request, so searches
never see a missing or half-filled index. To re-embed with another model,
:meth:`~OpenSearchStore.next_index` creates an empty generation; write into it
through a store whose ``index`` is that name, then :meth:`~OpenSearchStore.swap_alias`.

Adopting an existing index: name it (or an alias of it) in ``settings.index``
and its fields in ``settings.fields``; ``fields.metadata = ""`` when the
filterable fields are top-level. :meth:`~OpenSearchStore.adoption_plan` lists
the fields ImageScope needs and the index lacks (caption vector with the image
field's own method, caption, uri), :meth:`~OpenSearchStore.adopt` adds exactly
those. Writes into an adopted index (no ``_meta.imagescope_mapping``) are
partial: an existing document only gets ImageScope's own fields (``caption``,
``caption_vector``), a new one is created whole (``upsert``), and a field the
mapping does not declare fails that record instead of growing the mapping.

Errors: unreachable nodes, timeouts, HTTP 429 and 502-504 are retried with
exponential backoff (``max_retries`` times, from ``retry_backoff_s``), then
raised as ``StoreUnavailableError``; HTTP 401/403 as ``ConfigError``; any other
failure of OpenSearch as ``BackendError``. Per-document failures of a bulk write
are reported by id in ``BulkReport.failed`` and never fail the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
from numpy.typing import NDArray
from opensearchpy import OpenSearch
from opensearchpy.exceptions import TransportError

from imagescope.errors import ConfigError, DimensionMismatchError, InputError
from imagescope.schemas import Filters
from imagescope.settings import OpenSearchSettings
from imagescope.store import opensearch_scan
from imagescope.store.base import (
    BulkReport,
    CaptionUpdate,
    CatalogRecord,
    Hit,
    VectorField,
    VectorStore,
    check_query_vectors,
    check_vector,
    validate_filters,
)
from imagescope.store.mappings import (
    CatalogLayout,
    VectorFieldInfo,
    caption_additions,
    check_record_id,
    filter_query,
    read_layout,
    score_to_similarity,
)
from imagescope.store.opensearch_client import Requester, build_client, chunked
from imagescope.store.opensearch_docs import Documents
from imagescope.store.opensearch_index import CatalogIndex

log = logging.getLogger(__name__)

MGET_CHUNK = 500


class OpenSearchStore(VectorStore):
    """``VectorStore`` over an OpenSearch k-NN index (see the module docstring)."""

    name = "opensearch"

    def __init__(self, settings: OpenSearchSettings, *, client: OpenSearch | None = None) -> None:
        self.settings = settings
        self.fields = settings.fields
        self.alias = settings.index
        self.client = client if client is not None else build_client(settings)
        self.requests = Requester(self.client, settings)
        self.catalog = CatalogIndex(self.requests, settings)
        self.documents = Documents(settings.fields)
        self.dim: int | None = None
        self._layout: CatalogLayout | None = None
        self._index: str | None = None

    # ------------------------------------------------------------------ layout

    def _load_layout(self, *, refresh: bool = False) -> CatalogLayout | None:
        """The catalog fields as the index maps them (cached; ``None`` if no index)."""
        if self._layout is None or refresh:
            found = self.catalog.read_mapping()
            if found is None:
                self._layout, self._index = None, None
                return None
            self._index = found[0]
            self._layout = read_layout(found[1], self.fields, found[2])
            if self._layout.image is not None:
                self.dim = self._layout.image.dim
        return self._layout

    def _require_layout(self) -> tuple[CatalogLayout, int]:
        layout = self._load_layout()
        if layout is None or self.dim is None:
            raise self.catalog.missing_error()
        return layout, self.dim

    def _after_write(self) -> None:
        if self.settings.refresh_after_write:
            self.requests.call("refresh", self.client.indices.refresh, index=self.alias)

    # ------------------------------------------------------------------ index lifecycle

    def ensure(self, dim: int) -> None:
        """Validate the catalog for ``dim``-d vectors; never changes anything
        (except creating it when ``settings.create_missing``, for catalogs ImageScope owns).

        ``ConfigError`` when the name resolves to no index (naming the closest
        existing ones) or the image vector field is missing or not a usable
        ``knn_vector``; ``DimensionMismatchError`` when a vector field has
        another dimension.
        """
        if dim < 1:
            raise ConfigError(f"vector dimension must be positive, got {dim}")
        layout = self._load_layout(refresh=True)
        if layout is None and self.settings.create_missing:
            self.catalog.create_generation(dim, with_alias=True)
            layout = self._load_layout(refresh=True)
        if layout is None:
            raise self.catalog.missing_error()
        index = self._index or self.alias
        if layout.image is None:
            raise ConfigError(
                f"index {index!r} has no field {self.fields.image_vector!r}; set "
                "IMAGESCOPE_STORE__OPENSEARCH__FIELDS__IMAGE_VECTOR to its image vector field"
            )
        for info in (layout.image, layout.caption):
            if info is not None and info.dim != dim:
                raise DimensionMismatchError(index=index, index_dim=info.dim, embedder_dim=dim)
        if layout.managed:
            self._warn_if_method_differs(index, layout.image)

    def create_index(self, dim: int) -> str:
        """Create a new catalog ``<alias>-v1`` with the alias; its name.

        ``ConfigError`` when the name already resolves to an index or alias.
        """
        if self.catalog.read_mapping() is not None:
            raise ConfigError(f"{self.alias!r} already exists; nothing was created")
        name = self.catalog.create_generation(dim, with_alias=True)
        self.ensure(dim)
        return name

    def adoption_plan(self) -> tuple[str, dict[str, Any]]:
        """(concrete index, fields to add with their exact mappings); changes nothing."""
        layout = self._load_layout(refresh=True)
        if layout is None or self._index is None:
            raise self.catalog.missing_error()
        return self._index, caption_additions(self.settings, layout)

    def adopt(self) -> tuple[str, dict[str, Any]]:
        """Add the fields of :meth:`adoption_plan` to the index; what was added."""
        index, additions = self.adoption_plan()
        if additions:
            self.catalog.add_fields(index, additions)
        self._load_layout(refresh=True)
        return index, additions

    def _warn_if_method_differs(self, index: str, image: VectorFieldInfo) -> None:
        wanted = (self.settings.engine, self.settings.space_type)
        found = (image.engine, image.space_type)
        if found != wanted:
            log.warning(
                "index %s uses engine/space %s, settings ask for %s; scores are read in the "
                "index's space; reindex() to change it",
                index,
                found,
                wanted,
            )

    def next_index(self, dim: int | None = None) -> str:
        """Create the next, empty generation ``<alias>-v<N+1>`` (no alias); its name."""
        return self.catalog.create_generation(dim or self._require_layout()[1], with_alias=False)

    def swap_alias(self, new_index: str, *, delete_old: bool = False) -> None:
        """Point the alias at ``new_index`` only, in one atomic request."""
        self.catalog.swap_alias(new_index, delete_old=delete_old)
        self._load_layout(refresh=True)

    def reindex(self, *, delete_old: bool = False) -> str:
        """Copy the catalog into a new generation built from the current settings.

        The alias moves to the new index once every document is copied; the old
        index is deleted in the same request when ``delete_old``. Returns the
        new index's name. Writes made while it runs may be missed: pause them.
        """
        self._load_layout(refresh=True)  # the alias may have moved since we last looked
        _, dim = self._require_layout()
        source = self._index
        if source is None or source == self.alias:
            raise ConfigError(f"{self.alias!r} is not an alias of a catalog index; cannot reindex")
        target = self.catalog.create_generation(dim, with_alias=False)
        self.catalog.copy_documents(source, target)
        self.swap_alias(target, delete_old=delete_old)
        return target

    # ------------------------------------------------------------------ writes

    def _require_own_fields(self, layout: CatalogLayout) -> None:
        own = (self.fields.caption, self.fields.caption_vector)
        lacking = [name for name in own if name in layout.missing]
        if lacking and not layout.managed:
            raise ConfigError(
                f"index {self._index!r} lacks ImageScope's fields {lacking}; see the plan with "
                "`imagescope opensearch adopt` and add them with `--apply`"
            )

    def upsert(self, records: Iterable[CatalogRecord]) -> BulkReport:
        """Write records by id; report per id.

        A managed index gets whole documents (replacing earlier versions). An
        adopted index gets partial updates: an existing document keeps every
        field of its own and only has ImageScope's caption fields set; a new one
        is created with the record's fields, all of which the mapping must declare.
        """
        layout, dim = self._require_layout()
        self._require_own_fields(layout)
        rejected: dict[str, str] = {}

        def actions() -> Iterator[dict[str, Any]]:
            for record in records:
                try:
                    yield self.documents.action(record, layout, dim, self.alias)
                except InputError as exc:
                    rejected[str(record.id)] = str(exc)

        # bulk_pause_refresh: a managed index skips refreshes during the bulk (one
        # refresh after it); an adopted index's settings are never touched.
        pause = layout.managed and self.settings.bulk_pause_refresh
        paused = self.catalog.refresh_paused(self._index or self.alias)
        with paused if pause else nullcontext():
            report = self.requests.bulk("bulk upsert", actions())
        report.failed.update(rejected)
        self._after_write()
        self._layout = None  # the write may have mapped new metadata fields
        if report.failed:
            log.warning("upsert: %d written, %d failed", len(report.succeeded), len(report.failed))
        return report

    def update_captions(self, updates: Iterable[CaptionUpdate]) -> BulkReport:
        """Set caption + caption vector by id (partial update; image vectors untouched)."""
        layout, dim = self._require_layout()
        self._require_own_fields(layout)
        names = self.fields
        rejected: dict[str, str] = {}

        def actions() -> Iterator[dict[str, Any]]:
            for update in updates:
                try:
                    check_record_id(update.id)
                    vector = check_vector(update.caption_vector, dim)
                except InputError as exc:
                    rejected[str(update.id)] = str(exc)
                    continue
                doc = {names.caption: update.caption, names.caption_vector: vector}
                yield {"_op_type": "update", "_index": self.alias, "_id": update.id, "doc": doc}

        report = self.requests.bulk("caption backfill", actions())
        report.failed.update(rejected)
        self._after_write()
        return report

    def delete(self, ids: Sequence[str]) -> int:
        """Delete records by id; returns how many existed. Unknown ids are ignored."""
        if not ids or self._load_layout() is None:
            return 0
        unique = dict.fromkeys(ids)
        actions = ({"_op_type": "delete", "_index": self.alias, "_id": i} for i in unique)
        report = self.requests.bulk("bulk delete", actions)
        self._after_write()
        return len(report.succeeded)

    # ------------------------------------------------------------------ reads

    def get(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[CatalogRecord]:
        """Records that exist, in the order asked; missing ids are left out."""
        if not ids or self._load_layout() is None:
            return []
        params = {}
        if not with_vectors:
            params["_source_excludes"] = f"{self.fields.image_vector},{self.fields.caption_vector}"
        found: dict[str, CatalogRecord] = {}
        for chunk in chunked(dict.fromkeys(ids), MGET_CHUNK):
            response = self.requests.call(
                "get records",
                self.client.mget,
                index=self.alias,
                body={"ids": chunk},
                params=params,
            )
            for doc in response["docs"]:
                if doc.get("found"):
                    found[doc["_id"]] = self.documents.record(doc, with_vectors=with_vectors)
        return [found[i] for i in ids if i in found]

    def _filter_paths(self, filters: Filters | None) -> dict[str, str]:
        """Validated filter fields -> query paths; re-reads the mapping once on a miss."""
        layout, _ = self._require_layout()
        if filters and not set(filters) <= set(layout.filter_paths):
            layout = self._load_layout(refresh=True) or layout
        validate_filters(filters, set(layout.filter_paths))
        return layout.filter_paths

    def _knn_body(
        self, path: str, vector: NDArray[np.float32], k: int, flt: dict[str, Any] | None
    ) -> dict[str, Any]:
        clause: dict[str, Any] = {
            "vector": vector.tolist(),
            "k": k,
            "method_parameters": {"ef_search": max(self.settings.ef_search, k)},
        }
        if flt is not None:
            clause["filter"] = flt
        body = {"size": k, "_source": False, "query": {"knn": {path: clause}}}
        if self.settings.search_pipeline:
            # _msearch takes no search_pipeline parameter; the body does.
            body["search_pipeline"] = self.settings.search_pipeline
        return body

    def _msearch(self, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        result = self.client.msearch(index=self.alias, body=lines)
        responses: list[dict[str, Any]] = result["responses"]
        for response in responses:
            if "error" in response:
                error = response["error"]
                kind = error.get("type", "error") if isinstance(error, dict) else str(error)
                raise TransportError(int(response.get("status", 500)), kind, response)
        return responses

    def knn(
        self,
        field: VectorField,
        vectors: NDArray[np.float32],
        *,
        k: int,
        filters: Filters | None = None,
    ) -> list[list[Hit]]:
        """Up to ``k`` hits per query vector, best first (similarity desc, id asc).

        Scores are exact similarities in the field's space (see the module docstring);
        ``field`` and ``k`` are checked by ``VectorStore``.
        """
        layout, dim = self._require_layout()
        queries = check_query_vectors(vectors, dim)
        paths = self._filter_paths(filters)
        info = layout.image if field == "image" else layout.caption
        if info is None:
            return [[] for _ in queries]
        path = self.fields.image_vector if field == "image" else self.fields.caption_vector
        flt = filter_query(filters, paths)
        lines: list[dict[str, Any]] = []
        for query in queries:
            lines += [{}, self._knn_body(path, query, k, flt)]
        results = []
        for response in self.requests.call("k-NN search", self._msearch, lines=lines):
            hits = [
                Hit(
                    id=h["_id"],
                    score=score_to_similarity(float(h["_score"]), info.space_type, info.engine),
                )
                for h in response["hits"]["hits"]
            ]
            hits.sort(key=lambda h: (-h.score, h.id))
            results.append(hits[:k])
        return results

    def ids_by_uri(self, uris: Sequence[str]) -> dict[str, str]:
        """uri -> record id for the uris that some record has (``opensearch_scan``)."""
        return opensearch_scan.ids_by_uri(self, uris)

    def ids_without_caption(self, *, batch: int = 500) -> Iterator[list[str]]:
        """Batches of ids of records without an ImageScope caption (``opensearch_scan``)."""
        return opensearch_scan.ids_without_caption(self, batch=batch)

    def count_without_caption(self) -> int:
        """Records that have no ImageScope caption yet."""
        return opensearch_scan.count_without_caption(self)

    def count(self) -> int:
        """Number of records in the catalog (``ConfigError`` when the name resolves to no index)."""
        found = self.requests.call_or_none("count records", self.client.count, index=self.alias)
        if found is None:
            raise self.catalog.missing_error()
        return int(found["count"])

    def metadata_fields(self) -> set[str]:
        """Filterable fields, read from the index mapping (``ConfigError`` without an index)."""
        layout = self._load_layout(refresh=True)
        if layout is None:
            raise self.catalog.missing_error()
        return set(layout.filter_paths)

    def close(self) -> None:
        self.client.close()
