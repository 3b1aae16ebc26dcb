"""ChatModel over an OpenAI-compatible ``/v1/chat/completions`` server.

This is what ``vllm serve`` (and many other servers) speak. Images travel as
data URLs placed before the text; requests of one batch run concurrently
(at most ``endpoint.max_concurrency`` at a time); timeouts, 429 and 5xx
answers are retried with exponential backoff (``endpoint.max_retries`` times)
and then raise ``ModelBackendError`` carrying the server's message.

The model's profile (:mod:`.profiles`) bounds the images per request, adds its
stop tokens as ``stop`` strings and, for raw-prompt models served with one of
the shipped ``--chat-template`` files, folds a system prompt into the user text
exactly as the in-process backend renders it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    before_sleep_log,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from imagescope.closing import Closing
from imagescope.errors import ConfigError, ModelBackendError
from imagescope.models.base import ChatModel, ChatReply, ChatRequest
from imagescope.models.image_data import image_to_data_url
from imagescope.models.profiles import ModelProfile, profile_for
from imagescope.models.prompts import add_logprob
from imagescope.settings import ChatEndpoint

logger = logging.getLogger(__name__)

#: Longest wait honoured from a server's Retry-After header, in seconds.
MAX_RETRY_AFTER_S = 30.0


class _TransientError(Exception):
    """A failure worth retrying (timeout, connection, 429, 5xx)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Skipped(Exception):
    """A request not sent because another request of its batch failed."""


class _RejectedError(ModelBackendError):
    """A 4xx answer other than 429: retrying the same request will not help."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


def _server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:500]
        for key in ("message", "detail", "error"):
            if body.get(key):
                return str(body[key])[:500]
    return str(body)[:500]


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("retry-after", ""))
    except ValueError:
        return None


def _first_token_logprobs(logprobs: Any) -> dict[str, float] | None:
    """token -> log-probability of the first generated token (OpenAI logprobs format)."""
    if not isinstance(logprobs, dict) or not logprobs.get("content"):
        return None
    first = logprobs["content"][0]
    out: dict[str, float] = {}
    for entry in first.get("top_logprobs") or []:
        add_logprob(out, str(entry["token"]), logprob=float(entry["logprob"]))
    if "token" in first and first["token"] not in out:
        out[str(first["token"])] = float(first["logprob"])
    return out


class OpenAIChatModel(Closing, ChatModel):
    """An OpenAI-compatible chat endpoint; greedy decoding (temperature 0).

    ``client`` replaces the internal ``httpx.Client`` (tests, custom TLS);
    ``retry_wait_s`` is the first backoff delay (it doubles per retry, jittered);
    ``profile`` defaults to the one matching ``endpoint.model``.
    Raises ``ConfigError`` when no model name is set, or when a request carries
    more images than the profile allows (before anything is sent).
    """

    def __init__(
        self,
        endpoint: ChatEndpoint,
        *,
        client: httpx.Client | None = None,
        retry_wait_s: float = 0.5,
        profile: ModelProfile | None = None,
    ) -> None:
        if not endpoint.model.strip():
            raise ConfigError(
                "the OpenAI-compatible endpoint has no model name; set the role's "
                "openai.model (e.g. IMAGESCOPE_MODELS__VERIFIER__OPENAI__MODEL) to the "
                "name the server serves"
            )
        self.endpoint = endpoint
        self.profile = profile or profile_for(endpoint.model)
        self.model_id = f"openai:{endpoint.model}@{endpoint.base_url}"
        self._headers = {"Content-Type": "application/json"}
        if endpoint.api_key is not None:
            self._headers["Authorization"] = f"Bearer {endpoint.api_key.get_secret_value()}"
        self._client = client or httpx.Client(
            base_url=endpoint.base_url,
            timeout=httpx.Timeout(endpoint.timeout_s),
            limits=httpx.Limits(max_connections=endpoint.max_concurrency),
        )
        self._owns_client = client is None
        # retry_wait_s, then twice that, ... (capped at 16x), each plus up to retry_wait_s.
        self._backoff = wait_exponential_jitter(
            multiplier=retry_wait_s, max=retry_wait_s * 16, jitter=retry_wait_s
        )
        self._json_mode_supported = True

    # ------------------------------------------------------------------ public

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatReply]:
        for request in requests:
            self.profile.check_images(len(request.images), self.model_id)
        if len(requests) <= 1:
            return [self._complete_one(r) for r in requests]
        errors: list[Exception] = []

        def run(request: ChatRequest) -> ChatReply:
            if errors:  # one request failed: the batch fails, do not send the rest
                raise _Skipped
            try:
                return self._complete_one(request)
            except Exception as exc:
                errors.append(exc)
                raise

        workers = min(self.endpoint.max_concurrency, len(requests))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="openai-chat") as pool:
            futures = [pool.submit(run, request) for request in requests]
            try:
                return [future.result() for future in futures]
            except _Skipped:
                raise errors[0] from None
            finally:
                for future in futures:
                    future.cancel()

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    # ------------------------------------------------------------------ one request

    def _messages(self, request: ChatRequest) -> list[dict[str, Any]]:
        system, text = request.system, request.text
        profile = self.profile
        if system and profile.prompt_format == "raw" and "{system}" not in profile.template:
            text = f"{system.strip()}\n\n{text}"
            system = None
        messages: list[dict[str, Any]] = []
        if system:
            messages.append({"role": "system", "content": system})
        if request.images:
            images = [
                {"type": "image_url", "image_url": {"url": image_to_data_url(image)}}
                for image in request.images
            ]
            parts = [{"type": "text", "text": text}]
            content: str | list[dict[str, Any]] = (
                images + parts if profile.images_first else parts + images
            )
        else:
            content = text
        messages.append({"role": "user", "content": content})
        return messages

    def _payload(self, request: ChatRequest, *, json_mode: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.endpoint.model,
            "messages": self._messages(request),
            "max_tokens": request.max_tokens,
            "temperature": 0.0,
        }
        if request.top_logprobs:
            payload["logprobs"] = True
            payload["top_logprobs"] = request.top_logprobs
        if self.profile.stop_tokens:
            payload["stop"] = list(self.profile.stop_tokens)
        if json_mode:
            payload["response_format"] = {"type": "json_object"}
        return payload

    def _complete_one(self, request: ChatRequest) -> ChatReply:
        json_mode = request.json_mode and self._json_mode_supported
        try:
            return self._parse(self._send(self._payload(request, json_mode=json_mode)))
        except _RejectedError as exc:
            if not json_mode or exc.status not in (400, 422):
                raise
            reply = self._parse(self._send(self._payload(request, json_mode=False)))
            logger.warning(
                "%s rejected response_format=json_object (%s); asking without it from now on",
                self.model_id,
                exc,
            )
            self._json_mode_supported = False
            return reply

    def _send(self, payload: dict[str, Any]) -> dict[str, Any]:
        attempts = self.endpoint.max_retries + 1
        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_TransientError),
            before_sleep=before_sleep_log(logger, logging.WARNING),
            reraise=True,
        )
        try:
            return retrying(self._post, payload)
        except _TransientError as exc:
            raise ModelBackendError(
                f"{self.model_id}: {exc} (gave up after {attempts} attempt(s))"
            ) from exc

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        hinted = error.retry_after if isinstance(error, _TransientError) else None
        return max(self._backoff(state), min(hinted or 0.0, MAX_RETRY_AFTER_S))

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._client.post("chat/completions", json=payload, headers=self._headers)
        except httpx.TimeoutException as exc:
            raise _TransientError(f"no answer within {self.endpoint.timeout_s}s") from exc
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise _TransientError(f"cannot reach the server: {exc}") from exc
        except httpx.HTTPError as exc:
            raise ModelBackendError(f"{self.model_id}: request failed: {exc}") from exc
        status = response.status_code
        if status == 429 or status >= 500:
            raise _TransientError(
                f"HTTP {status}: {_server_message(response)}", retry_after=_retry_after(response)
            )
        if status >= 400:
            raise _RejectedError(
                f"{self.model_id}: HTTP {status}: {_server_message(response)}", status=status
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise ModelBackendError(f"{self.model_id}: the server did not answer JSON") from exc
        if not isinstance(body, dict):
            raise ModelBackendError(f"{self.model_id}: unexpected answer {str(body)[:200]}")
        return body

    def _parse(self, body: dict[str, Any]) -> ChatReply:
        try:
            choice = body["choices"][0]
            text = choice["message"].get("content") or ""
            logprobs = _first_token_logprobs(choice.get("logprobs"))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise ModelBackendError(
                f"{self.model_id}: unexpected completion shape: {str(body)[:200]}"
            ) from exc
        usage = body.get("usage") or {}
        return ChatReply(
            text=str(text),
            first_token_logprobs=logprobs,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            extra={"finish_reason": choice.get("finish_reason")},
        )
