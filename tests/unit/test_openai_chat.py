"""OpenAIChatModel against a real local HTTP server process (fixtures/fake_openai_server.py)."""

from __future__ import annotations

import base64
import io
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from imagescope.errors import ConfigError, ModelBackendError
from imagescope.models.base import ChatRequest, VerifyItem
from imagescope.models.chat import ChatVerifier
from imagescope.models.openai_chat import OpenAIChatModel
from imagescope.settings import ChatEndpoint

pytestmark = pytest.mark.unit

SERVER_SCRIPT = Path(__file__).resolve().parents[1] / "fixtures" / "fake_openai_server.py"


class FakeServer:
    """Client of the fake server's control endpoints."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.base_url = f"{base}/v1"
        self._control = httpx.Client(base_url=base, timeout=5.0)

    def reset(self) -> None:
        self._control.post("/_control/reset", json={}).raise_for_status()

    def script(self, **script: Any) -> None:
        self._control.post("/_control/script", json=script).raise_for_status()

    def state(self) -> dict[str, Any]:
        response = self._control.get("/_control/requests")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def requests(self) -> list[dict[str, Any]]:
        return list(self.state()["requests"])

    def close(self) -> None:
        self._control.close()


@pytest.fixture(scope="module")
def fake_server_process() -> Iterator[FakeServer]:
    process = subprocess.Popen(
        [sys.executable, str(SERVER_SCRIPT), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("listening on "):
        process.kill()
        pytest.fail(f"fake OpenAI server did not start: {line!r} {process.stderr!r}")
    server = FakeServer(f"http://127.0.0.1:{int(line.split()[-1])}")
    try:
        yield server
    finally:
        server.close()
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def server(fake_server_process: FakeServer) -> FakeServer:
    fake_server_process.reset()
    return fake_server_process


def make_model(server: FakeServer, **endpoint: Any) -> OpenAIChatModel:
    options: dict[str, Any] = {"base_url": server.base_url, "model": "tiny-vlm", **endpoint}
    return OpenAIChatModel(ChatEndpoint(**options), retry_wait_s=0.01)


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (24, 16)) -> Image.Image:
    return Image.new("RGB", size, colour)


def decode_data_url(url: str) -> Image.Image:
    header, data = url.split(",", 1)
    assert header == "data:image/jpeg;base64"
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_verification_request_shape_and_reply(server: FakeServer) -> None:
    server.script(default={"text": "Yes", "logprobs": {"Yes": -0.1, " yes": -2.5, "No": -3.0}})
    image = solid((200, 10, 10))
    model = make_model(server, api_key="s3cret")
    [reply] = model.complete(
        [ChatRequest(text="Is there a dog?", images=(image,), max_tokens=1, top_logprobs=2)]
    )
    [recorded] = server.requests()
    body = recorded["body"]
    assert recorded["headers"]["Authorization"] == "Bearer s3cret"
    assert body["model"] == "tiny-vlm"
    assert (body["max_tokens"], body["temperature"]) == (1, 0.0)
    assert (body["logprobs"], body["top_logprobs"]) == (True, 2)
    assert "response_format" not in body
    [message] = body["messages"]
    image_part, text_part = message["content"]
    assert image_part["type"] == "image_url" and text_part == {
        "type": "text",
        "text": "Is there a dog?",
    }
    sent = decode_data_url(image_part["image_url"]["url"])
    assert sent.size == image.size
    pixel = sent.convert("RGB").getpixel((12, 8))
    assert isinstance(pixel, tuple) and pixel[0] > 180 and pixel[1] < 40
    assert reply.text == "Yes"
    assert reply.first_token_logprobs == {"Yes": -0.1, " yes": -2.5}
    assert (reply.prompt_tokens, reply.completion_tokens) == (4, 1)
    assert model.model_id == f"openai:tiny-vlm@{server.base_url}"


def test_text_request_with_system_and_json_mode(server: FakeServer) -> None:
    server.script(default={"text": '{"descriptions": ["a cat"]}'})
    model = make_model(server)
    [reply] = model.complete([ChatRequest(text="plan", system="be brief", json_mode=True)])
    body = server.requests()[0]["body"]
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "plan"},
    ]
    assert body["response_format"] == {"type": "json_object"}
    assert "logprobs" not in body and "Authorization" not in server.requests()[0]["headers"]
    assert reply.text == '{"descriptions": ["a cat"]}' and reply.first_token_logprobs is None


def test_json_mode_falls_back_when_the_server_rejects_it(server: FakeServer) -> None:
    server.script(reject_response_format=True, default={"text": "{}"})
    model = make_model(server)
    first = model.complete([ChatRequest(text="one", json_mode=True)])
    second = model.complete([ChatRequest(text="two", json_mode=True)])
    sent = [("response_format" in r["body"]) for r in server.requests()]
    assert sent == [True, False, False]
    assert first[0].text == second[0].text == "{}"


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_errors_are_retried_then_succeed(server: FakeServer, status: int) -> None:
    server.script(fail_first=2, fail_status=status, default={"text": "No"})
    model = make_model(server, max_retries=3)
    [reply] = model.complete([ChatRequest(text="Is it red?")])
    assert reply.text == "No"
    assert len(server.requests()) == 3


def test_retries_exhausted_raise_backend_error_with_server_message(server: FakeServer) -> None:
    server.script(fail_first=100, fail_status=503)
    model = make_model(server, max_retries=2)
    with pytest.raises(ModelBackendError, match="HTTP 503: scripted failure 503") as caught:
        model.complete([ChatRequest(text="Is it red?")])
    assert "3 attempt" in str(caught.value)
    assert len(server.requests()) == 3


def test_client_errors_are_not_retried(server: FakeServer) -> None:
    server.script(replies=[{"status": 400, "error": "prompt is too long"}])
    model = make_model(server, max_retries=3)
    with pytest.raises(ModelBackendError, match="HTTP 400: prompt is too long"):
        model.complete([ChatRequest(text="x")])
    assert len(server.requests()) == 1


def test_wrong_api_key_is_reported(server: FakeServer) -> None:
    server.script(api_key="right")
    model = make_model(server, api_key="wrong")
    with pytest.raises(ModelBackendError, match="HTTP 401: invalid API key"):
        model.complete([ChatRequest(text="x")])


def test_timeouts_are_bounded(server: FakeServer) -> None:
    server.script(delay_s=3.0)
    model = make_model(server, timeout_s=0.3, max_retries=1)
    started = time.perf_counter()
    with pytest.raises(ModelBackendError, match="no answer within 0.3s"):
        model.complete([ChatRequest(text="slow")])
    elapsed = time.perf_counter() - started
    assert 0.6 <= elapsed < 2.5  # two 0.3 s attempts, not the server's 3 s
    assert len(server.requests()) == 2


def test_unreachable_server_is_a_backend_error() -> None:
    model = OpenAIChatModel(
        ChatEndpoint(base_url="http://127.0.0.1:9/v1", model="m", max_retries=1),
        retry_wait_s=0.01,
    )
    with pytest.raises(ModelBackendError, match="cannot reach the server"):
        model.complete([ChatRequest(text="x")])


def test_batch_runs_concurrently_and_keeps_order(server: FakeServer) -> None:
    rules = [{"contains": f"question {i}", "text": f"answer {i}", "delay_s": 0.2} for i in range(6)]
    server.script(rules=rules)
    model = make_model(server, max_concurrency=3)
    replies = model.complete([ChatRequest(text=f"question {i}") for i in range(6)])
    assert [r.text for r in replies] == [f"answer {i}" for i in range(6)]
    assert server.state()["max_in_flight"] == 3  # concurrent, and never above the bound


def test_missing_model_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="openai.model"):
        OpenAIChatModel(ChatEndpoint(model=" "))


def test_unexpected_completion_shape_is_a_backend_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"choices": []})

    client = httpx.Client(base_url="http://model.test/v1", transport=httpx.MockTransport(handler))
    model = OpenAIChatModel(ChatEndpoint(model="m"), client=client)
    with pytest.raises(ModelBackendError, match="unexpected completion shape"):
        model.complete([ChatRequest(text="x")])


def test_verifier_over_http_reads_yes_probability(server: FakeServer) -> None:
    server.script(
        rules=[
            {"contains": "dog", "text": "Yes", "logprobs": {"Yes": math.log(0.6), "No": -2.0}},
            {"contains": "oven", "text": "No", "logprobs": {"No": math.log(0.9), "yes": -4.0}},
        ]
    )
    verifier = ChatVerifier(make_model(server))
    image = solid((0, 0, 255))
    dog, oven = verifier.verify(
        [
            VerifyItem("img1", image, "Is there a dog?"),
            VerifyItem("img1", image, "Is there an oven?"),
        ]
    )
    p_no = math.exp(-2.0)
    assert dog.yes and dog.p_yes == pytest.approx(0.6 / (0.6 + p_no))
    assert not oven.yes and oven.p_yes == pytest.approx(math.exp(-4.0) / (math.exp(-4.0) + 0.9))
    assert verifier.usage.calls == 2 and verifier.usage.completion_tokens == 2
    for recorded in server.requests():
        content = recorded["body"]["messages"][0]["content"]
        assert [part["type"] for part in content] == ["image_url", "text"]
        assert recorded["body"]["max_tokens"] == 1


def test_a_failed_request_stops_the_rest_of_the_batch(server: FakeServer) -> None:
    server.script(rules=[{"contains": "bad", "status": 400, "error": "bad request"}])
    model = make_model(server, max_concurrency=1)
    with pytest.raises(ModelBackendError, match="bad request"):
        model.complete([ChatRequest(text=t) for t in ("bad", "ok 1", "ok 2", "ok 3")])
    assert [r["body"]["messages"][0]["content"] for r in server.requests()] == ["bad"]
