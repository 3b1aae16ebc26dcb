"""ImageScope inside OpenSearch's search path, on a real node with ml-commons.

The team's unchanged client query, plus ``?search_pipeline=imagescope``, comes
back reranked in exactly ImageScope's own stage-2 order for the same hits; an
unsupported query is a clear error; past the deadline the original order comes
back, flagged; uninstall removes everything.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from opensearchpy import OpenSearch
from opensearchpy.exceptions import TransportError

from imagescope.api import create_app
from imagescope.api.score_routes import rerank_given
from imagescope.settings import Settings
from imagescope.wiring import load_embedder, open_jobs
from imagescope.wiring import open as open_engine
from tests.fixtures.opensearch import INDEX, N_USER, create_user_index, run_cli
from tests.fixtures.services import service_missing

pytestmark = pytest.mark.integration
TEXT = "red stars on a white background"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def api_url(products_env, products_catalog, opensearch_url: str) -> Iterator[str]:
    """The user's index, and ImageScope's API over it in this process."""
    plugins = httpx.get(f"{opensearch_url}/_cat/plugins", timeout=10).text
    if "MachineLearningPlugin" not in plugins or "NeuralSearch" not in plugins:
        service_missing("OpenSearch ml-commons", "start the node with --with-ml")
    root, rows = products_catalog
    settings = Settings()
    client = OpenSearch([opensearch_url])
    create_user_index(client, load_embedder(settings), root, rows[:N_USER], scaled=False)
    engine = open_engine(settings)
    jobs = open_jobs(engine, settings)
    port = free_port()
    config = uvicorn.Config(create_app(engine, jobs, settings), port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the API did not start"
    yield f"http://127.0.0.1:{port}"
    for name in ("imagescope", "imagescope-fast"):
        run_cli("uninstall-pipeline", "--name", name)
    server.should_exit = True
    thread.join(10)
    jobs.close()
    engine.close()


def search(client: OpenSearch, query: dict[str, Any], pipeline: str | None) -> list[dict[str, Any]]:
    params = {"search_pipeline": pipeline} if pipeline else {}
    body = {"size": 20, "query": query}
    hits: list[dict[str, Any]] = client.search(index=INDEX, body=body, params=params)["hits"][
        "hits"
    ]
    return hits


def test_an_unchanged_client_query_is_reranked_by_imagescope(api_url, opensearch_url):
    client = OpenSearch([opensearch_url])
    patient = ("--endpoint", api_url, "--deadline-ms", "60000")  # a slow shared CI machine
    created = run_cli("install-pipeline", *patient)
    assert "connector" in created and "model" in created and "search pipeline imagescope" in created
    assert "nothing to change" in run_cli("install-pipeline", *patient)

    query = {"match": {"title": TEXT}}
    plain = [h["_id"] for h in search(client, query, None)]
    piped = search(client, query, "imagescope")
    assert len(plain) == 20 and sorted(h["_id"] for h in piped) == sorted(plain)
    with open_engine(Settings()) as engine:
        expected = [c.id for c in rerank_given(engine, TEXT, plain, [2]).candidates]
    assert [h["_id"] for h in piped] == expected
    assert [h["_id"] for h in piped] != plain  # stage 2 did move hits
    assert all(h["_source"]["imagescope_reranked"] is True for h in piped)
    assert all("propositions hold" in h["_source"]["imagescope_explanation"] for h in piped)
    assert all(set(h["_source"]) >= {"title", "img_path", "imagescope_score"} for h in piped)

    multi = {"multi_match": {"query": TEXT, "fields": ["title"]}}
    assert all(h["_source"]["imagescope_reranked"] for h in search(client, multi, "imagescope"))
    with pytest.raises(TransportError, match=r"400.*no query text found in a .{0,3}term"):
        search(client, {"term": {"colour": "red"}}, "imagescope")


def test_past_the_deadline_hits_keep_their_order_with_a_flag(api_url, opensearch_url):
    client = OpenSearch([opensearch_url])
    run_cli(
        "install-pipeline", "--endpoint", api_url, "--name", "imagescope-fast", "--deadline-ms", "1"
    )
    query = {"match": {"title": TEXT}}
    plain = [h["_id"] for h in search(client, query, None)]
    piped = search(client, query, "imagescope-fast")
    assert [h["_id"] for h in piped] == plain
    assert all(h["_source"]["imagescope_reranked"] is False for h in piped)
    assert "deadline of 1 ms passed" in piped[0]["_source"]["imagescope_explanation"]
    removed = run_cli("uninstall-pipeline", "--name", "imagescope-fast")
    assert "search pipeline imagescope-fast" in removed and "connector" in removed
    with pytest.raises(TransportError):
        search(client, query, "imagescope-fast")
