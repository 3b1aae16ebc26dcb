"""Browser fixtures: a live API server over a drawn catalog, and headless Chromium.

The server is the real app (``create_app``) served by uvicorn on a free
loopback port in a thread, with the in-process job backend. Chromium is
Debian's (``/usr/bin/chromium``), driven by Playwright, with a fresh profile.
Screenshots go to ``artifacts/e2e/`` at the repository root.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from imagescope.jobs.base import JobBackend
from tests.e2e.catalog import ServedCatalog, build_catalog, build_empty_catalog
from tests.fixtures.services import service_missing

CHROMIUM = os.environ.get("IMAGESCOPE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "e2e"
#: The verifier's pause per call on the main server, so stage 1 is seen before the rerank.
VERIFY_DELAY_S = 2.0


@dataclass
class LiveServer:
    url: str
    jobs: JobBackend
    _server: Any
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self.jobs.close()


def start_server(catalog: ServedCatalog, jobs: JobBackend) -> LiveServer:
    """Serves ``create_app`` over ``catalog`` and ``jobs``; returns once it accepts."""
    import uvicorn

    from imagescope.api import create_app

    app = create_app(catalog.engine, jobs, catalog.settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test API server did not start")
        time.sleep(0.02)
    return LiveServer(f"http://127.0.0.1:{port}/", jobs, server, thread)


@pytest.fixture(scope="session")
def served_catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedCatalog]:
    catalog = build_catalog(tmp_path_factory.mktemp("e2e-catalog"))
    yield catalog
    catalog.engine.close()


@pytest.fixture(scope="session")
def server_factory(
    served_catalog: ServedCatalog,
) -> Iterator[Callable[..., LiveServer]]:
    """Starts extra servers over the same catalog (a failing verifier, one to stop)."""
    from imagescope.jobs.factory import build_job_backend, job_components

    started: list[LiveServer] = []

    def start(*, verify_delay_s: float = 0.0, verify_fails: bool = False) -> LiveServer:
        components = served_catalog.components(
            verify_delay_s=verify_delay_s, verify_fails=verify_fails
        )
        settings = served_catalog.settings
        jobs = build_job_backend(settings, job_components(components, settings))
        live = start_server(served_catalog, jobs)
        started.append(live)
        return live

    yield start
    for live in started:
        if live._thread.is_alive():
            live.stop()


@pytest.fixture(scope="session")
def live_server(server_factory: Callable[..., LiveServer]) -> LiveServer:
    return server_factory(verify_delay_s=VERIFY_DELAY_S)


#: The API key the keyed test server takes.
API_KEY = "e2e-key-1"


@pytest.fixture(scope="session")
def keyed_server(served_catalog: ServedCatalog) -> Iterator[LiveServer]:
    """A server that wants ``X-API-Key: API_KEY`` (images: an image token)."""
    import dataclasses

    from pydantic import SecretStr

    from imagescope.jobs.factory import build_job_backend, job_components

    api = served_catalog.settings.api.model_copy(update={"api_keys": [SecretStr(API_KEY)]})
    settings = served_catalog.settings.model_copy(update={"api": api})
    keyed = dataclasses.replace(served_catalog, settings=settings)
    jobs = build_job_backend(settings, job_components(served_catalog.components(), settings))
    live = start_server(keyed, jobs)
    yield live
    live.stop()


@pytest.fixture(scope="session")
def empty_server(
    served_catalog: ServedCatalog, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server over a catalog nothing was ingested into yet."""
    from imagescope.jobs.factory import build_job_backend, job_components

    empty = build_empty_catalog(tmp_path_factory.mktemp("e2e-empty"), served_catalog)
    settings = empty.settings
    jobs = build_job_backend(settings, job_components(empty.engine.components, settings))
    live = start_server(empty, jobs)
    yield live
    live.stop()
    empty.engine.close()


@pytest.fixture(scope="session")
def image_host(served_catalog: ServedCatalog) -> Iterator[str]:
    """A plain HTTP server (another origin) serving the catalog folder; yields its URL."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(served_catalog.folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        service_missing("chromium", f"no executable at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        service_missing("chromium", "the playwright package is not installed")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        try:
            context = playwright.chromium.launch_persistent_context(
                str(profile),
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 900},
            )
        except PlaywrightError as exc:
            service_missing("chromium", f"it would not start: {exc}")
        context.set_default_timeout(15_000)
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


@dataclass
class PageErrors:
    """Uncaught JavaScript errors a page raised (a test fails if there are any)."""

    messages: list[str] = field(default_factory=list)


@pytest.fixture
def page(browser_context: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    tab = browser_context.new_page()
    errors = PageErrors()
    tab.on("pageerror", lambda exc: errors.messages.append(str(exc)))
    yield tab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}-final.png"))
    finally:
        tab.close()
    assert not errors.messages, f"JavaScript errors on the page: {errors.messages}"


def screenshot(page: Any, name: str, *, full_page: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
