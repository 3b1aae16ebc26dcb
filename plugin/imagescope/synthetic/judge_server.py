"""ImageScope-Judge behind an OpenAI-compatible endpoint, the way GPU models are served.

    python -m imagescope.synthetic.judge_server --port 8011

``POST /v1/chat/completions`` reads the prompts the ``openai`` backend sends
(:mod:`imagescope.models.prompts`) with ``image_url`` parts as data URLs:

- a verify prompt (one image, a question): the reply is ``Yes`` or ``No``,
  and with ``logprobs`` the first token's top log-probabilities hold
  log P(yes) and log P(no) from the judge's verify head;
- an evaluate prompt (``ANSWER: Yes`` / ``ANSWER: No`` asked): the quoted
  instruction, and the reference and candidate from one side-by-side image
  (reference left) or two separate images; the reply is ``ANSWER: Yes|No``
  and a reason built from the judge's checks.

``GET /v1/models`` lists the one model. Bad requests get HTTP 400 with an
OpenAI-style ``{"error": {"message": ...}}`` saying what to send instead.
"""

from __future__ import annotations

import argparse
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from PIL.Image import Image

from imagescope.errors import ImageScopeError
from imagescope.ingest.images import decode_base64, decode_image
from imagescope.models.base import EvaluationItem, VerifyItem
from imagescope.settings import ImageLimits
from imagescope.synthetic.judge_backend import LearnedEvaluator, LearnedVerifier
from imagescope.synthetic.judge_model import MODEL_NAME

_QUOTED = re.compile(r'(?:changed like this|looking for): "(.*)"\s*$', re.MULTILINE)
_REPLY_HINT = re.compile(r"\s*Reply with one word: Yes or No\.?\s*$", re.IGNORECASE)
_LIMITS = ImageLimits()
_PROB_FLOOR = 1e-6


class BadRequest(Exception):
    """A request the judge cannot answer; the message says why."""


@dataclass(frozen=True)
class Prompt:
    text: str
    images: list[Image]


def read_prompt(body: Any) -> Prompt:
    """The last user message's text and images (data URLs)."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        raise BadRequest('the body must be a JSON object with "messages": [...]')
    users = [m for m in body["messages"] if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise BadRequest("no user message; send one with the image(s) and the question")
    content = users[-1].get("content")
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(parts, list):
        raise BadRequest("message content must be a string or a list of parts")
    texts, images = [], []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            if not str(url).startswith("data:"):
                raise BadRequest("image_url must be a data URL (data:image/png;base64,...)")
            try:
                images.append(decode_image(decode_base64(url, limits=_LIMITS), limits=_LIMITS))
            except ImageScopeError as exc:
                raise BadRequest(f"unreadable image: {exc}") from exc
    text = "\n".join(texts).strip()
    if not text:
        raise BadRequest("the user message has no text; send the question or instruction")
    if not images:
        raise BadRequest(f"{MODEL_NAME} judges images: add an image_url part")
    return Prompt(text, images)


def split_side_by_side(image: Image) -> tuple[Image, Image]:
    """Left and right square panels of a side-by-side composition (equal heights)."""
    side = image.height
    if image.width < 2 * side:
        raise BadRequest("an evaluation image must hold two panels side by side")
    return image.crop((0, 0, side, side)), image.crop((image.width - side, 0, image.width, side))


def _logprobs(p_yes: float, first: str) -> dict[str, Any]:
    p = min(1.0 - _PROB_FLOOR, max(_PROB_FLOOR, p_yes))
    top: list[dict[str, Any]] = [
        {"token": "Yes", "logprob": math.log(p)},
        {"token": "No", "logprob": math.log(1 - p)},
    ]
    top.sort(key=lambda t: -float(t["logprob"]))
    chosen = next(t for t in top if t["token"] == first)
    return {"content": [{**chosen, "top_logprobs": top}]}


class JudgeService:
    """Answers verify and evaluate prompts with the learned judge."""

    def __init__(self, weights: Path | None = None) -> None:
        self.verifier = LearnedVerifier(weights)
        self.evaluator = LearnedEvaluator(weights)

    def answer(self, prompt: Prompt) -> tuple[str, float]:
        """Reply text and P(yes) of its first word."""
        if "ANSWER: Yes" in prompt.text:
            return self._evaluate(prompt)
        question = _REPLY_HINT.sub("", prompt.text).strip()
        answer = self.verifier.verify([VerifyItem("request", prompt.images[0], question)])[0]
        p_yes = answer.p_yes if answer.p_yes is not None else float(answer.yes)
        return ("Yes" if answer.yes else "No"), p_yes

    def _evaluate(self, prompt: Prompt) -> tuple[str, float]:
        match = _QUOTED.search(prompt.text)
        if match is None:
            raise BadRequest('an evaluate prompt must quote the request: looking for: "..."')
        has_reference = "changed like this" in match.group(0)
        if len(prompt.images) >= 2:
            reference, candidate = prompt.images[0], prompt.images[-1]
        elif "side by side" in prompt.text or "LEFT" in prompt.text:
            reference, candidate = split_side_by_side(prompt.images[0])
        else:
            reference, candidate = None, prompt.images[0]
        item = EvaluationItem(
            "request", candidate, match.group(1), reference if has_reference else None
        )
        evaluation, p_accept = self.evaluator.scored([item])[0]
        verdict = "Yes" if evaluation.accepted else "No"
        return f"ANSWER: {verdict}. {evaluation.reason}", p_accept


def _completion(body: dict[str, Any], text: str, p_yes: float) -> dict[str, Any]:
    first = text.split(":")[-1].split(".")[0].strip() if text.startswith("ANSWER") else text
    max_tokens = int(body.get("max_tokens") or 512)
    shown = text if max_tokens > 1 else first
    reply: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": shown},
        "finish_reason": "stop" if max_tokens > 1 else "length",
    }
    if body.get("logprobs"):
        reply["logprobs"] = _logprobs(p_yes, first)
    return {
        "id": f"chatcmpl-{time.time_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model") or MODEL_NAME),
        "choices": [reply],
        "usage": {
            "prompt_tokens": len(str(body).split()),
            "completion_tokens": len(shown.split()),
            "total_tokens": len(str(body).split()) + len(shown.split()),
        },
    }


def create_app(weights: Path | None = None) -> FastAPI:
    service = JudgeService(weights)
    app = FastAPI(title=f"{MODEL_NAME} (OpenAI-compatible)")

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL_NAME, "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error("the body is not JSON")
        try:
            text, p_yes = service.answer(read_prompt(body))
        except BadRequest as exc:
            return _error(str(exc))
        return JSONResponse(_completion(body, text, p_yes))

    return app


def _error(message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, 400)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(description=f"Serve {MODEL_NAME} as an OpenAI-compatible API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--weights", type=Path, default=None, help="a judge weights file")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    uvicorn.run(create_app(args.weights), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
