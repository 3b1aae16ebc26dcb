"""Scans over an OpenSearch catalog: uri lookups and records still without a caption.

``ids_by_uri`` serves ``POST /v1/score`` (the search pipeline sends the hits'
uris); ``ids_without_caption`` drives ``imagescope opensearch backfill-captions``
(a scroll over the documents lacking ImageScope's caption field, so a rerun
resumes where the last one stopped). Both send ``search_pipeline`` so a user's
default pipeline never sees them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from imagescope.store.opensearch_client import chunked

if TYPE_CHECKING:
    from imagescope.store.opensearch import OpenSearchStore

MGET_CHUNK = 500


def _missing_caption(store: OpenSearchStore) -> dict[str, Any]:
    return {"bool": {"must_not": {"exists": {"field": store.fields.caption}}}}


def ids_by_uri(store: OpenSearchStore, uris: Sequence[str]) -> dict[str, str]:
    """uri -> record id for the uris that some record has (first match wins)."""
    found: dict[str, str] = {}
    for chunk in chunked(dict.fromkeys(u for u in uris if u), MGET_CHUNK):
        body = {
            "size": len(chunk) * 2,
            "_source": [store.fields.uri],
            "query": {"terms": {store.fields.uri: chunk}},
            "search_pipeline": store.settings.search_pipeline,
        }
        response = store.requests.call(
            "look up uris", store.client.search, index=store.alias, body=body
        )
        for hit in response["hits"]["hits"]:
            uri = (hit.get("_source") or {}).get(store.fields.uri)
            if isinstance(uri, str):
                found.setdefault(uri, hit["_id"])
    return found


def ids_without_caption(store: OpenSearchStore, *, batch: int = 500) -> Iterator[list[str]]:
    """Batches of ids of records that have no ImageScope caption yet (a scroll)."""
    body = {
        "size": batch,
        "_source": False,
        "sort": ["_doc"],
        "query": _missing_caption(store),
        "search_pipeline": store.settings.search_pipeline,
    }
    response = store.requests.call(
        "list records without caption",
        store.client.search,
        index=store.alias,
        body=body,
        params={"scroll": "5m"},
    )
    scroll_id = response.get("_scroll_id")
    try:
        while hits := response["hits"]["hits"]:
            yield [h["_id"] for h in hits]
            response = store.requests.call(
                "continue the scroll",
                store.client.scroll,
                body={"scroll": "5m", "scroll_id": scroll_id},
            )
            scroll_id = response.get("_scroll_id", scroll_id)
    finally:
        if scroll_id:
            store.requests.call_or_none(
                "clear the scroll", store.client.clear_scroll, body={"scroll_id": scroll_id}
            )


def count_without_caption(store: OpenSearchStore) -> int:
    """Records that have no ImageScope caption yet."""
    body = {"query": _missing_caption(store)}
    found = store.requests.call_or_none(
        "count records", store.client.count, index=store.alias, body=body
    )
    return int(found["count"]) if found else 0
