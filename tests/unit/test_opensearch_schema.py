"""The OpenSearch catalog's mapping, filters, scores and retry rules, without a server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import TransportError
from pydantic import ValidationError

from imagescope.errors import (
    BackendError,
    ConfigError,
    InputError,
    StoreUnavailableError,
)
from imagescope.settings import FieldMapping, OpenSearchSettings
from imagescope.store.mappings import (
    caption_additions,
    check_metadata,
    check_record_id,
    exact_similarity,
    filter_query,
    load_catalog_template,
    read_layout,
    render_catalog_index,
    score_to_similarity,
)
from imagescope.store.opensearch_client import Requester, chunked

pytestmark = pytest.mark.unit
REPO_ROOT = Path(__file__).resolve().parents[2]


def test_repository_mappings_are_the_packaged_ones():
    packaged = REPO_ROOT / "plugin" / "imagescope" / "mappings" / "catalog.v1.json"
    assert json.loads((REPO_ROOT / "mappings" / "catalog.v1.json").read_text()) == json.loads(
        packaged.read_text()
    )
    assert load_catalog_template(1) == json.loads(packaged.read_text())
    with pytest.raises(ConfigError, match="version 99"):
        load_catalog_template(99)


def test_rendered_index_takes_names_dimension_and_method_from_settings():
    settings = OpenSearchSettings(
        engine="faiss",
        space_type="innerproduct",
        hnsw_m=24,
        ef_construction=200,
        number_of_replicas=0,
        fields=FieldMapping(image_vector="img", caption_vector="cap", caption="text"),
    )
    body = render_catalog_index(settings, 512)
    props = body["mappings"]["properties"]
    assert set(props) == {"img", "cap", "text", "uri", "metadata"}
    assert props["img"]["dimension"] == props["cap"]["dimension"] == 512
    assert props["img"]["method"] == {
        "name": "hnsw",
        "engine": "faiss",
        "space_type": "innerproduct",
        "parameters": {"m": 24, "ef_construction": 200},
    }
    assert body["settings"]["index"]["knn"] is True
    assert body["settings"]["index"]["number_of_replicas"] == 0
    assert body["mappings"]["dynamic"] == "strict"
    templates = [next(iter(t.values())) for t in body["mappings"]["dynamic_templates"]]
    assert {t["path_match"] for t in templates} == {"metadata.*"}


def test_top_level_metadata_makes_the_root_dynamic():
    settings = OpenSearchSettings(fields=FieldMapping(metadata=""))
    body = render_catalog_index(settings, 4)
    assert "metadata" not in body["mappings"]["properties"]
    assert body["mappings"]["dynamic"] is True
    templates = [next(iter(t.values())) for t in body["mappings"]["dynamic_templates"]]
    assert {t["path_match"] for t in templates} == {"*"}


def test_repeated_field_names_are_refused():
    settings = OpenSearchSettings(fields=FieldMapping(image_vector="v", caption_vector="v"))
    with pytest.raises(ConfigError, match="repeats a name"):
        render_catalog_index(settings, 4)


def test_layout_reads_vector_fields_and_filter_paths():
    props = {
        "img": {"type": "knn_vector", "dimension": 4},
        "caption": {"type": "text"},
        "title": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
        "price": {"type": "float"},
        "shop": {"properties": {"city": {"type": "keyword"}}},
        "offers": {"type": "nested", "properties": {"price": {"type": "float"}}},
    }
    layout = read_layout(props, FieldMapping(image_vector="img", metadata=""))
    assert layout.image is not None and (layout.image.dim, layout.image.space_type) == (4, "l2")
    assert layout.caption is None
    assert layout.missing == ("caption_vector", "uri")
    assert layout.filter_paths == {"title": "title.raw", "price": "price", "shop.city": "shop.city"}


def test_layout_refuses_fields_it_cannot_search():
    with pytest.raises(ConfigError, match="not a knn_vector"):
        read_layout({"image_vector": {"type": "float"}}, FieldMapping())
    hamming = {"type": "knn_vector", "dimension": 8, "space_type": "hamming"}
    with pytest.raises(ConfigError, match="hamming"):
        read_layout({"image_vector": hamming}, FieldMapping())
    trained = {"type": "knn_vector", "model_id": "my-model"}
    with pytest.raises(ConfigError, match="no dimension"):
        read_layout({"image_vector": trained}, FieldMapping())


@pytest.mark.parametrize(
    ("space", "engine", "score", "similarity"),
    [
        ("cosinesimil", "lucene", 1.0, 1.0),
        ("cosinesimil", "lucene", 0.25, -0.5),
        ("cosinesimil", "nmslib", 0.5, -0.5),
        ("innerproduct", "lucene", 1.5, 0.5),
        ("innerproduct", "faiss", 0.5, -1.0),
        ("innerproduct", "lucene", 5.0, 4.0),  # non-unit vectors: the raw inner product
        ("l2", "lucene", 1.0, 1.0),  # distance 0
        ("l2", "lucene", 1 / 3, 0.0),  # squared distance 2
        ("l1", "nmslib", 0.25, -3.0),
        ("linf", "nmslib", 0.5, -1.0),
    ],
)
def test_scores_turn_back_into_exact_similarities(space, engine, score, similarity):
    assert score_to_similarity(score, space, engine) == pytest.approx(similarity)


@pytest.mark.parametrize("space", ["cosinesimil", "innerproduct", "l2", "l1", "linf"])
def test_exact_similarity_inverts_the_plugin_score(space):
    """The plugin's documented score formula, then back: the numpy similarity again."""
    rng = np.random.default_rng(0)
    vectors, query = rng.normal(size=(5, 4)) * 3, rng.normal(size=4) * 2
    sims = exact_similarity(vectors, query, space)
    if space == "cosinesimil":
        scores = (1 + sims) / 2
    elif space == "innerproduct":
        scores = np.where(sims >= 0, 1 + sims, 1 / (1 - sims))
    elif space == "l2":
        scores = 1 / (1 + 2 * (1 - sims))
    else:
        scores = 1 / (1 - sims)
    back = [score_to_similarity(float(s), space, "lucene") for s in scores]
    np.testing.assert_allclose(back, sims, rtol=1e-9)


def test_settings_express_every_engine_and_refuse_unsupported_spaces():
    for engine, space in [("nmslib", "l1"), ("faiss", "l2"), ("lucene", "innerproduct")]:
        assert OpenSearchSettings(engine=engine, space_type=space).engine == engine
    with pytest.raises(ValidationError, match="lucene engine does not support space_type 'l1'"):
        OpenSearchSettings(engine="lucene", space_type="l1")


def test_adoption_plan_copies_the_image_fields_method():
    method = {"name": "hnsw", "engine": "nmslib", "space_type": "l2", "parameters": {"m": 24}}
    props = {
        "clip_emb": {"type": "knn_vector", "dimension": 4, "method": method},
        "title": {"type": "text"},
        "img_path": {"type": "keyword"},
    }
    settings = OpenSearchSettings(
        fields={"image_vector": "clip_emb", "uri": "img_path", "metadata": "", "text": "title"}
    )
    plan = caption_additions(settings, read_layout(props, settings.fields))
    assert plan == {
        "caption_vector": {"type": "knn_vector", "dimension": 4, "method": method},
        "caption": {"type": "text"},
    }
    layout = read_layout({**props, **plan}, settings.fields)
    assert caption_additions(settings, layout) == {}
    assert not layout.managed and "title" not in layout.filter_paths


def test_filters_become_a_bool_filter_over_mapped_paths():
    paths = {"color": "metadata.color", "price": "metadata.price", "tag": "metadata.tag"}
    query = filter_query({"price": {"gte": 1, "lt": 5}, "color": "red", "tag": ["a", "b"]}, paths)
    assert query == {
        "bool": {
            "filter": [
                {"term": {"metadata.color": "red"}},
                {"range": {"metadata.price": {"gte": 1, "lt": 5}}},
                {"terms": {"metadata.tag": ["a", "b"]}},
            ]
        }
    }
    assert filter_query({}, paths) is None


def test_documents_are_checked_before_sending():
    check_record_id("ok")
    with pytest.raises(InputError, match="non-empty"):
        check_record_id("")
    with pytest.raises(InputError, match="512 bytes"):
        check_record_id("é" * 300)
    assert check_metadata({"tags": ["a", 1, True], "n": None}) == {
        "tags": ["a", 1, True],
        "n": None,
    }
    with pytest.raises(InputError, match="finite"):
        check_metadata({"price": float("nan")})
    with pytest.raises(InputError, match="a dict"):
        check_metadata({"nested": {"a": 1}})


def test_chunked_splits_any_iterable():
    assert list(chunked(iter(range(5)), 2)) == [[0, 1], [2, 3], [4]]
    assert list(chunked([], 3)) == []


# --------------------------------------------------------------------------- retries


class Flaky:
    """Fails with the given errors, then answers."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "answer"


def requester(max_retries: int = 3, **overrides: float) -> Requester:
    values = {"retry_backoff_s": 0.001, **overrides}
    settings = OpenSearchSettings(max_retries=max_retries, **values)
    return Requester(client=None, settings=settings)  # type: ignore[arg-type]


def test_transient_failures_are_retried_then_succeed():
    flaky = Flaky(TransportError(503, "unavailable"), TransportError(429, "too_many_requests"))
    assert requester().call("search", flaky) == "answer"
    assert flaky.calls == 3


def test_retries_are_bounded_and_end_in_store_unavailable():
    flaky = Flaky(*(OSConnectionError("N/A", "refused", None) for _ in range(10)))
    with pytest.raises(StoreUnavailableError, match="cannot be reached"):
        requester(max_retries=2).call("search", flaky)
    assert flaky.calls == 3


def test_permanent_failures_are_not_retried():
    bad_request = Flaky(TransportError(400, "parsing_exception", {"error": {"reason": "bad"}}))
    with pytest.raises(BackendError, match="HTTP 400") as info:
        requester().call("search", bad_request)
    assert not isinstance(info.value, StoreUnavailableError)
    assert bad_request.calls == 1
    denied = Flaky(TransportError(403, "security_exception"))
    with pytest.raises(ConfigError, match="password"):
        requester().call("search", denied)
    assert requester().call_or_none("read", Flaky(TransportError(404, "index_not_found"))) is None


def test_an_unreachable_cluster_fails_within_the_connect_budget():
    flaky = Flaky(*(OSConnectionError("N/A", "refused", None) for _ in range(100)))
    slow = requester(max_retries=50, retry_backoff_s=0.2, connect_budget_s=1.0)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="cannot be reached"):
        slow.call("search", flaky)
    assert time.monotonic() - started < 2.0
    assert 2 <= flaky.calls < 10
