"""Webhook delivery pins the checked address, ignores proxy variables and keeps
the URL's query string out of logs and outcomes."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from imagescope.jobs import webhook
from imagescope.jobs.base import JobRecord
from imagescope.jobs.memory import MemoryJobStore
from imagescope.jobs.webhook import WebhookSender, redact_url
from tests.unit.test_jobs import make_components, make_request

pytestmark = pytest.mark.unit

PUBLIC_IP = "93.184.216.34"


def test_delivery_connects_to_the_checked_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the second lookup would say 127.0.0.1; there is no second lookup."""
    answers = iter([PUBLIC_IP, "127.0.0.1", "127.0.0.1"])
    lookups: list[str] = []

    def fake_getaddrinfo(host: str, port: object, *args: Any, **kw: Any) -> list[Any]:
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), 443))]

    monkeypatch.setattr(webhook.socket, "getaddrinfo", fake_getaddrinfo)
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    sender = WebhookSender(SecretStr("s"), transport=httpx.MockTransport(answer))
    outcome = sender.deliver("https://hooks.example.com:8443/done?token=abc", b"{}")
    assert outcome == "delivered"
    assert lookups == ["hooks.example.com"]  # resolved once, when checked
    request = seen[0]
    assert request.url.host == PUBLIC_IP and request.url.port == 8443
    assert request.url.query == b"token=abc"
    assert request.headers["Host"] == "hooks.example.com:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.com"


class _Receiver(BaseHTTPRequestHandler):
    hosts: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.hosts.append(self.headers["Host"])
        self.send_response(500 if "fail" in self.path else 204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def receiver() -> Iterator[int]:
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_proxy_variables_are_ignored_and_the_token_never_logged(
    receiver: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    sender = WebhookSender(SecretStr("s"), allow_private=True, attempts=2)
    components = make_components()
    store = MemoryJobStore()
    notify = sender.notifier(store)
    outcomes = []
    for path in ("ok", "fail"):
        url = f"http://127.0.0.1:{receiver}/{path}?token=TOPSECRET"
        record, _ = store.create(JobRecord.new(path, make_request(components, webhook_url=url)))
        with caplog.at_level(logging.DEBUG):
            notify(record)
        outcomes.append(store.get(path).webhook)
    assert outcomes[0] == "delivered"  # reached directly, not through the dead proxy
    assert outcomes[1] == "failed after 2 attempts: HTTP 500"
    assert "TOPSECRET" not in caplog.text and "TOPSECRET" not in "".join(outcomes)
    assert f"127.0.0.1:{receiver}/ok?<redacted>" in caplog.text


def test_redact_url_drops_credentials_query_and_fragment() -> None:
    assert (
        redact_url("https://u:p@h.example:8443/a/b?t=1#f")
        == "https://h.example:8443/a/b?<redacted>"
    )
    assert redact_url("http://[::1]:80/x") == "http://[::1]:80/x"
