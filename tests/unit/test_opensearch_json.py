"""The orjson request serializer: float32 vectors exact, standard-library results otherwise."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import numpy as np
import pytest
from opensearchpy.exceptions import SerializationError
from opensearchpy.serializer import JSONSerializer

from imagescope.settings import FieldMapping, OpenSearchSettings
from imagescope.store.base import CatalogRecord
from imagescope.store.mappings import CatalogLayout
from imagescope.store.opensearch_client import build_client
from imagescope.store.opensearch_docs import Documents
from imagescope.store.opensearch_json import OrjsonSerializer

pytestmark = pytest.mark.unit

FAST = OrjsonSerializer()
STDLIB = JSONSerializer()


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_float32_vectors_round_trip_exactly_in_fewer_bytes():
    vectors = unit_vectors(50, 512)
    for vector in vectors:
        text = FAST.dumps({"image_vector": vector})
        back = np.asarray(json.loads(text)["image_vector"], dtype=np.float32)
        assert np.array_equal(back, vector)
    one = {"image_vector": vectors[0]}
    assert len(FAST.dumps(one)) < 0.7 * len(STDLIB.dumps({"image_vector": vectors[0].tolist()}))


def test_arrays_orjson_cannot_write_directly_still_round_trip():
    vectors = unit_vectors(4, 8)
    for array in (vectors[:, 1], vectors.astype(">f4")[0], np.asfortranarray(vectors)):
        back = np.asarray(json.loads(FAST.dumps({"v": array}))["v"], dtype=np.float32)
        assert np.array_equal(back, array)


@pytest.mark.parametrize(
    "value",
    [
        {"when": datetime(2024, 5, 6, 7, 8, 9, 123456), "day": date(2024, 5, 6)},
        {"when": datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)},
        {"price": Decimal("12.50"), "id": uuid.UUID(int=7)},
        {"n": np.int64(3), "x": np.float64(0.25), "ok": np.bool_(True)},
        {1: "int key", "nested": {"list": [1, "two", None, True, 2.5]}},
        {"text": "é ü 漢字 \u2028", "big": 2**70},
        [{"index": {"_id": "a"}}, {"caption": ""}],
    ],
)
def test_other_values_read_back_as_the_standard_library_writes_them(value):
    assert json.loads(FAST.dumps(value)) == json.loads(STDLIB.dumps(value))


def test_strings_pass_through_and_unknown_types_fail_clearly():
    assert FAST.dumps('{"already": "json"}') == '{"already": "json"}'

    @dataclass
    class Point:
        x: int

    with pytest.raises(SerializationError, match="Point"):
        FAST.dumps({"p": Point(1)})
    with pytest.raises(SerializationError):
        FAST.dumps({"s": {1, 2}})


def test_non_finite_floats_become_null():
    assert json.loads(FAST.dumps({"x": float("nan"), "y": np.float32("inf")})) == {
        "x": None,
        "y": None,
    }


def test_the_store_client_writes_with_it_and_reads_with_the_standard_library():
    client = build_client(OpenSearchSettings())
    assert isinstance(client.transport.serializer, OrjsonSerializer)
    big = '{"count": 123456789012345678901234567890}'
    loaded = client.transport.deserializer.loads(big, "application/json")
    assert loaded["count"] == 123456789012345678901234567890


@pytest.mark.parametrize("managed", [True, False])
def test_bulk_actions_carry_arrays_that_serialize_to_the_same_vectors(managed):
    dim = 16
    image, caption = unit_vectors(2, dim, seed=3)
    record = CatalogRecord(
        id="a", image_vector=image, caption_vector=caption, caption="red", uri="/a"
    )
    declared = frozenset({"image_vector", "caption_vector", "caption", "uri", "metadata"})
    layout = CatalogLayout(image=None, caption=None, managed=managed, declared=declared)
    action = Documents(FieldMapping()).action(record, layout, dim, "catalog")
    body = action["_source"] if managed else action["upsert"]
    sent = json.loads(FAST.dumps(body))
    assert np.array_equal(np.asarray(sent["image_vector"], dtype=np.float32), image)
    assert np.array_equal(np.asarray(sent["caption_vector"], dtype=np.float32), caption)
    assert sent["caption"] == "red" and sent["uri"] == "/a"
    # A client passed in by the caller (opensearch-py's own serializer) writes the same.
    plain = json.loads(STDLIB.dumps(body))
    assert np.array_equal(np.asarray(plain["image_vector"], dtype=np.float32), image)
    assert {k: v for k, v in plain.items() if "vector" not in k} == {
        k: v for k, v in sent.items() if "vector" not in k
    }
    if not managed:
        own = json.loads(FAST.dumps(action["doc"]))
        assert np.array_equal(np.asarray(own["caption_vector"], dtype=np.float32), caption)


def test_a_partial_write_leaves_out_blank_fields_but_keeps_vectors():
    dim = 4
    record = CatalogRecord(id="b", image_vector=unit_vectors(1, dim)[0], uri="")
    layout = CatalogLayout(
        image=None, caption=None, managed=False, declared=frozenset({"image_vector", "metadata"})
    )
    action = Documents(FieldMapping()).action(record, layout, dim, "catalog")
    assert set(action["upsert"]) == {"image_vector", "metadata"}
    assert action["doc"] == {}
