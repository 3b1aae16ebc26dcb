"""The search page's own routes: its options (upload limits, pipeline defaults) and
previews of a reference image given by URL, fetched by the guarded fetcher."""

from __future__ import annotations

import functools
import io
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from imagescope.api import create_app
from imagescope.api.page_routes import page_options
from imagescope.engine import Engine
from imagescope.jobs.inprocess import InProcessJobBackend
from imagescope.models.fakes import FakeEmbedder, FakeReasoner
from imagescope.pipeline.context import Components, StoreImageSource
from imagescope.settings import ApiSettings, ImageLimits, PipelineSettings, Settings
from imagescope.store.memory import MemoryStore

pytestmark = pytest.mark.unit


def make_settings(*, allow_private: bool = False, **api: Any) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        api=ApiSettings(**api),
        images=ImageLimits(allow_private_urls=allow_private, url_timeout_s=5),
    )


@functools.cache
def _pipeline() -> PipelineSettings:
    return PipelineSettings(limit=40, top_k=7, alpha=2)


def make_client(settings: Settings) -> Iterator[TestClient]:
    store = MemoryStore()
    store.ensure(16)
    components = Components(
        embedder=FakeEmbedder(dim=16),
        store=store,
        reasoner=FakeReasoner(),
        images=StoreImageSource(store, settings.images),
    )
    engine = Engine(components, _pipeline())
    jobs = InProcessJobBackend(engine.components, workers=1)
    with TestClient(create_app(engine, jobs, settings)) as client:
        yield client
    jobs.close()


@pytest.fixture
def client() -> Iterator[TestClient]:
    yield from make_client(make_settings())


@pytest.fixture
def image_server(tmp_path: Path) -> Iterator[str]:
    Image.new("RGB", (400, 200), (200, 30, 30)).save(tmp_path / "red.png")
    (tmp_path / "notes.txt").write_text("not an image")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_upload_limit_is_what_fits_in_a_request_body() -> None:
    small_body = make_settings(max_request_bytes=1_000_000)
    options = page_options(small_body, _pipeline())
    assert options.max_upload_bytes == (1_000_000 - 16 * 1024) * 3 // 4
    big_body = make_settings(max_request_bytes=200 * 1024 * 1024)
    assert page_options(big_body, _pipeline()).max_upload_bytes == big_body.images.max_bytes
    assert {"image/jpeg", "image/png", "image/webp"} <= set(options.image_types)
    assert "text/plain" not in options.image_types


def test_page_options_route_gives_limits_and_pipeline_defaults(client: TestClient) -> None:
    response = client.get("/v1/page-options")
    assert response.status_code == 200
    body = response.json()
    assert (body["top_k"], body["alpha"], body["limit"]) == (7, 2, 40)
    assert body["max_upload_bytes"] < 20 * 1024 * 1024  # base64 in a 25 MB body


def test_preview_refuses_private_hosts_and_other_schemes(client: TestClient) -> None:
    private = client.get("/v1/reference/preview", params={"url": "http://127.0.0.1:9/x.png"})
    assert private.status_code == 403
    assert "non-public address" in private.json()["detail"]
    ftp = client.get("/v1/reference/preview", params={"url": "ftp://example.com/x.png"})
    assert ftp.status_code == 403
    assert "not an http(s) URL" in ftp.json()["detail"]
    big = client.get("/v1/reference/preview", params={"url": "http://example.com/", "size": 9999})
    assert big.status_code == 400
    assert "at most 512" in big.json()["detail"]


def test_preview_fetches_a_url_as_a_thumbnail(image_server: str) -> None:
    for client in make_client(make_settings(allow_private=True)):
        ok = client.get("/v1/reference/preview", params={"url": image_server + "red.png"})
        assert ok.status_code == 200
        assert ok.headers["content-type"] == "image/jpeg"
        image = Image.open(io.BytesIO(ok.content))
        assert image.size == (160, 80)
        missing = client.get("/v1/reference/preview", params={"url": image_server + "no.png"})
        assert missing.status_code == 422
        assert "answered HTTP 404" in missing.json()["detail"]
        text = client.get("/v1/reference/preview", params={"url": image_server + "notes.txt"})
        assert text.status_code == 422
        assert "not an image" in text.json()["detail"]
