"""The catalog's shape in OpenSearch: index mappings, documents and filters.

Source of truth: ``plugin/imagescope/mappings/catalog.v<N>.json``, shipped as
package data (``imagescope/mappings/*.json``) so a non-editable install has it;
the repository's top-level ``mappings/`` holds links to those files for people
and tools that look there. A template names fields by their default names
(``settings.store.opensearch.fields``); :func:`render_catalog_index` renames
them, fills in each vector's dimension (from the embedder) and HNSW method
(from settings), and returns the body of an index-creation request.

:func:`read_layout` goes the other way: from the mapping of an existing index
(created here or adopted) to what the store needs to know, i.e. each vector
field's dimension and space, and which fields filters may use and how to
address them in a query. The last section checks what a document may hold
(ids, flat metadata) and turns the filter language of ``store.base`` into an
OpenSearch ``bool`` filter over those paths.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from imagescope.errors import ConfigError, InputError
from imagescope.schemas import Filters
from imagescope.settings import FieldMapping, OpenSearchSettings

#: The mapping version this code writes.
CATALOG_MAPPING_VERSION = 1
#: Spaces whose scores can be turned back into an exact similarity of float vectors.
SUPPORTED_SPACES = frozenset({"cosinesimil", "innerproduct", "l2", "l1", "linf"})
#: The k-NN plugin's default space when a mapping names none.
DEFAULT_SPACE = "l2"
_TEMPLATE_FIELDS = FieldMapping()


@dataclass(frozen=True)
class VectorFieldInfo:
    """A ``knn_vector`` field as the index defines it."""

    dim: int
    space_type: str
    engine: str | None = None
    #: The field's ``method`` as the mapping states it (copied for companion fields).
    method: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CatalogLayout:
    """What an index mapping says about the catalog fields."""

    image: VectorFieldInfo | None
    caption: VectorFieldInfo | None
    #: Filter name -> the field path to query (``metadata.color``, ``title.keyword``).
    filter_paths: dict[str, str] = field(default_factory=dict)
    #: Catalog fields (settings names) that the mapping lacks.
    missing: tuple[str, ...] = ()
    #: Created by ImageScope (``_meta.imagescope_mapping``), not adopted.
    managed: bool = False
    #: Every field path the mapping declares (dotted), to refuse dynamic fields.
    declared: frozenset[str] = frozenset()


def load_catalog_template(version: int = CATALOG_MAPPING_VERSION) -> dict[str, Any]:
    """The versioned template (settings + mappings) as shipped with the package."""
    resource = resources.files("imagescope").joinpath("mappings", f"catalog.v{version}.json")
    try:
        text = resource.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(
            f"no catalog mapping version {version} (imagescope/mappings/catalog.v{version}.json)"
        ) from exc
    body: dict[str, Any] = json.loads(text)
    return body


def vector_mapping(settings: OpenSearchSettings, dim: int) -> dict[str, Any]:
    """One ``knn_vector`` field with the HNSW method chosen in settings."""
    if settings.space_type == "hamming":
        raise ConfigError(
            "space_type 'hamming' is for binary vectors; CLIP vectors are float: choose "
            "cosinesimil, innerproduct or l2"
        )
    return {
        "type": "knn_vector",
        "dimension": dim,
        "method": {
            "name": "hnsw",
            "engine": settings.engine,
            "space_type": settings.space_type,
            "parameters": {"m": settings.hnsw_m, "ef_construction": settings.ef_construction},
        },
    }


def render_catalog_index(
    settings: OpenSearchSettings, dim: int, *, version: int = CATALOG_MAPPING_VERSION
) -> dict[str, Any]:
    """The body of the create-index request for a new catalog index of ``dim``."""
    body = copy.deepcopy(load_catalog_template(version))
    index_settings = body["settings"]["index"]
    index_settings["number_of_shards"] = settings.number_of_shards
    index_settings["number_of_replicas"] = settings.number_of_replicas
    mappings = body["mappings"]
    template_props: dict[str, Any] = mappings["properties"]
    names = settings.fields
    props: dict[str, Any] = {
        names.image_vector: vector_mapping(settings, dim),
        names.caption_vector: vector_mapping(settings, dim),
        names.caption: template_props[_TEMPLATE_FIELDS.caption],
        names.uri: template_props[_TEMPLATE_FIELDS.uri],
    }
    if len(props) < 4:
        raise ConfigError(f"settings.store.opensearch.fields repeats a name: {names}")
    if names.metadata:
        props[names.metadata] = template_props[_TEMPLATE_FIELDS.metadata]
        prefix = f"{names.metadata}."
    else:
        mappings["dynamic"] = True
        prefix = ""
    for template in mappings.get("dynamic_templates", []):
        for rule in template.values():
            rule["path_match"] = prefix + "*"
    mappings["properties"] = props
    return body


def caption_vector_mapping(image: VectorFieldInfo) -> dict[str, Any]:
    """The caption vector field for an index whose image field is ``image``.

    It copies the image field's method (engine, space, parameters), so the two
    fields always share an engine the index already uses: no lucene field in a
    faiss/nmslib index, and scores of both fields in the same space.
    """
    spec: dict[str, Any] = {"type": "knn_vector", "dimension": image.dim}
    if image.method:
        spec["method"] = copy.deepcopy(image.method)
    else:
        spec["space_type"] = image.space_type
    return spec


def caption_additions(settings: OpenSearchSettings, layout: CatalogLayout) -> dict[str, Any]:
    """The adoption plan: fields to add so ImageScope can store captions.

    Only fields the mapping lacks, each with its exact mapping; empty when the
    index already has them. The image vector field must exist (``ConfigError``).
    """
    names = settings.fields
    if layout.image is None:
        raise ConfigError(
            f"the index has no field {names.image_vector!r}; set "
            "IMAGESCOPE_STORE__OPENSEARCH__FIELDS__IMAGE_VECTOR to its image vector field"
        )
    additions: dict[str, Any] = {}
    if names.caption_vector in layout.missing:
        additions[names.caption_vector] = caption_vector_mapping(layout.image)
    if names.caption in layout.missing:
        additions[names.caption] = {"type": "text"}
    if names.uri in layout.missing:
        additions[names.uri] = {"type": "keyword", "ignore_above": 8191}
    return additions


# --------------------------------------------------------------------------- reading back


def _vector_info(spec: Mapping[str, Any] | None, name: str) -> VectorFieldInfo | None:
    if spec is None:
        return None
    if spec.get("type") != "knn_vector":
        raise ConfigError(f"field {name!r} is a {spec.get('type')!r}, not a knn_vector")
    if "dimension" not in spec:
        raise ConfigError(
            f"field {name!r} has no dimension (a trained-model field?); only knn_vector "
            "fields with a dimension and an HNSW method are supported"
        )
    method = spec.get("method") or {}
    space = method.get("space_type") or spec.get("space_type") or DEFAULT_SPACE
    if space not in SUPPORTED_SPACES:
        raise ConfigError(
            f"field {name!r} uses space {space!r}; supported: {sorted(SUPPORTED_SPACES)}"
        )
    return VectorFieldInfo(
        dim=int(spec["dimension"]),
        space_type=space,
        engine=method.get("engine"),
        method=dict(method),
    )


def _leaf_paths(props: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flattened leaf fields: dotted name -> path to query (keyword sub-field for text)."""
    paths: dict[str, str] = {}
    for name, spec in props.items():
        dotted = f"{prefix}{name}"
        if spec.get("type") == "nested":
            continue  # needs nested queries; not part of the filter language
        if "properties" in spec:
            paths.update(_leaf_paths(spec["properties"], f"{dotted}."))
        elif spec.get("type") == "text":
            keyword = next(
                (sub for sub, s in spec.get("fields", {}).items() if s.get("type") == "keyword"),
                None,
            )
            paths[dotted] = f"{dotted}.{keyword}" if keyword else dotted
        elif spec.get("type") not in {"knn_vector", "object", "nested"}:
            paths[dotted] = dotted
    return paths


def _declared(props: Mapping[str, Any], prefix: str = "") -> set[str]:
    names: set[str] = set()
    for name, spec in props.items():
        names.add(f"{prefix}{name}")
        names |= _declared(spec.get("properties", {}), f"{prefix}{name}.")
    return names


def read_layout(
    properties: Mapping[str, Any], fields: FieldMapping, meta: Mapping[str, Any] | None = None
) -> CatalogLayout:
    """Interpret an index's ``properties`` (and ``_meta``) through the field-name mapping."""
    catalog_names = (fields.image_vector, fields.caption_vector, fields.caption, fields.uri)
    if fields.metadata:
        meta_spec = properties.get(fields.metadata, {})
        leaves = _leaf_paths(meta_spec.get("properties", {}))
        filter_paths = {name: f"{fields.metadata}.{path}" for name, path in leaves.items()}
    else:
        rest = {k: v for k, v in properties.items() if k not in {*catalog_names, fields.text}}
        filter_paths = _leaf_paths(rest)
    missing = tuple(name for name in catalog_names if name not in properties)
    return CatalogLayout(
        image=_vector_info(properties.get(fields.image_vector), fields.image_vector),
        caption=_vector_info(properties.get(fields.caption_vector), fields.caption_vector),
        filter_paths=filter_paths,
        missing=missing,
        managed="imagescope_mapping" in (meta or {}),
        declared=frozenset(_declared(properties)),
    )


def score_to_similarity(score: float, space_type: str, engine: str | None = None) -> float:
    """Undo the k-NN plugin's score transform: the exact similarity in the field's space.

    Whatever the vectors' lengths: cosinesimil gives the cosine (lucene and
    faiss score ``(1 + cos) / 2``, nmslib ``1 + cos``); innerproduct the inner
    product (``1 + ip`` when ``ip >= 0`` else ``1 / (1 - ip)``); l2 gives
    ``1 - d^2 / 2`` (the plugin scores ``1 / (1 + d^2)``), which is the cosine
    for unit vectors and orders like the distance otherwise; l1 and linf give
    ``-d`` (scored ``1 / (1 + d)``). Higher is always closer.
    """
    if space_type == "cosinesimil":
        return score - 1.0 if engine == "nmslib" else 2.0 * score - 1.0
    if space_type == "innerproduct":
        return score - 1.0 if score >= 1.0 else 1.0 - 1.0 / score
    if space_type == "l2":
        return 1.0 - (1.0 / score - 1.0) / 2.0
    if space_type in ("l1", "linf"):
        return 1.0 - 1.0 / score
    raise ConfigError(f"cannot turn {space_type!r} scores into a similarity")


def exact_similarity(vectors: Any, query: Any, space_type: str) -> Any:
    """What :func:`score_to_similarity` recovers, computed exactly with numpy."""
    import numpy as np

    v = np.asarray(vectors, dtype=np.float64)
    q = np.asarray(query, dtype=np.float64)
    if space_type == "cosinesimil":
        return (v @ q) / (np.linalg.norm(v, axis=1) * np.linalg.norm(q))
    if space_type == "innerproduct":
        return v @ q
    if space_type == "l2":
        return 1.0 - ((v - q) ** 2).sum(axis=1) / 2.0
    if space_type == "l1":
        return -np.abs(v - q).sum(axis=1)
    if space_type == "linf":
        return -np.abs(v - q).max(axis=1)
    raise ConfigError(f"no exact similarity for space {space_type!r}")


# --------------------------------------------------------------------------- documents, filters

#: OpenSearch rejects ids longer than 512 bytes.
MAX_ID_BYTES = 512
ScalarValue = str | int | float | bool


def check_record_id(record_id: str) -> None:
    """A usable document id: non-empty, at most 512 UTF-8 bytes."""
    if not isinstance(record_id, str) or not record_id:
        raise InputError("a record id must be a non-empty string")
    if len(record_id.encode("utf-8")) > MAX_ID_BYTES:
        raise InputError(f"record id is longer than {MAX_ID_BYTES} bytes; use a shorter id")


def _check_scalar(name: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"metadata {name!r} is {value}; use a finite number or leave it out")
    if value is not None and not isinstance(value, ScalarValue):
        raise InputError(
            f"metadata {name!r} is a {type(value).__name__}; metadata values are strings, "
            "numbers, booleans or lists of those"
        )


def check_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Flat metadata: plain names, scalar values or lists of scalars, finite numbers."""
    for name, value in metadata.items():
        if not isinstance(name, str) or not name or name.startswith(".") or name.endswith("."):
            raise InputError(f"metadata field name {name!r} is not usable; use a plain name")
        for item in value if isinstance(value, list) else [value]:
            _check_scalar(name, item)
    return dict(metadata)


def _term_clause(path: str, condition: Any) -> dict[str, Any]:
    if isinstance(condition, dict):
        return {"range": {path: dict(condition)}}
    if isinstance(condition, list):
        return {"terms": {path: list(condition)}}
    return {"term": {path: condition}}


def filter_query(filters: Filters | None, paths: Mapping[str, str]) -> dict[str, Any] | None:
    """The OpenSearch filter for validated ``filters`` (``None`` when there are none)."""
    if not filters:
        return None
    clauses = [_term_clause(paths[name], cond) for name, cond in sorted(filters.items())]
    return {"bool": {"filter": clauses}}
