"""Batching verifications across concurrent jobs into shared backend calls.

A worker (or the in-process backend) runs several rerank jobs at once in
threads; each job asks the verifier about its own (image, question) pairs.
``BatchingVerifier`` queues those pairs and a single dispatcher thread sends
them to the wrapped verifier in batches of up to ``max_batch`` items, waiting
at most ``window_ms`` after the oldest queued item for others to join. Every
caller gets its own answers, in its own order. Because one thread makes every
backend call, a backend that is not thread-safe (an in-process GPU engine) is
safe behind it.

It lives in ``imagescope`` (not ``rerank_workers``) because the embedded
in-process backend runs concurrent jobs too and benefits the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from imagescope.errors import ModelBackendError
from imagescope.models.base import Verifier, VerifyItem
from imagescope.schemas import Answer

log = logging.getLogger(__name__)


@dataclass
class _Request:
    items: Sequence[VerifyItem]
    answers: list[Answer | None]
    remaining: int
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


@dataclass(frozen=True)
class _Entry:
    request: _Request
    index: int
    queued_at: float


@dataclass
class BatchStats:
    """Backend calls made and items sent through them."""

    calls: int = 0
    items: int = 0
    batch_sizes: list[int] = field(default_factory=list)


class BatchingVerifier(Verifier):
    """A Verifier that merges concurrent callers' items into shared ``inner`` calls.

    Contract: as ``Verifier`` (one answer per item, in order). When a shared
    call fails, each caller's items are retried alone, so an error reaches only
    the callers whose own items fail.
    """

    def __init__(self, inner: Verifier, *, max_batch: int, window_ms: float) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.inner = inner
        self.model_id = inner.model_id
        self.image_vector_model = inner.image_vector_model
        self.max_batch = max_batch
        self.window_s = max(0.0, window_ms) / 1000.0
        self.stats = BatchStats()
        self._pending: deque[_Entry] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def verify(self, items: Sequence[VerifyItem]) -> list[Answer]:
        if not items:
            return []
        request = _Request(items=items, answers=[None] * len(items), remaining=len(items))
        now = time.monotonic()
        with self._cond:
            if self._closed:
                raise ModelBackendError("the batching verifier is closed")
            self._pending.extend(_Entry(request, i, now) for i in range(len(items)))
            self._start()
            self._cond.notify_all()
        request.done.wait()
        if request.error is not None:
            raise request.error
        return [a for a in request.answers if a is not None]

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="batching-verifier", daemon=True)
            self._thread.start()

    def _next_batch(self) -> list[_Entry] | None:
        """Waits for a full batch or the window's end; None when closed and drained."""
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if not self._pending:
                return None
            deadline = self._pending[0].queued_at + self.window_s
            while len(self._pending) < self.max_batch and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch: list[_Entry] = []
            while self._pending and len(batch) < self.max_batch:
                entry = self._pending.popleft()
                if entry.request.error is None:
                    batch.append(entry)
            return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            if batch:
                self._send(batch)

    def _call(self, batch: list[_Entry]) -> list[Answer]:
        answers = self.inner.verify([e.request.items[e.index] for e in batch])
        self.stats.calls += 1
        if len(answers) != len(batch):
            raise ModelBackendError(
                f"verifier {self.model_id} returned {len(answers)} answers "
                f"for {len(batch)} questions"
            )
        self.stats.items += len(batch)
        self.stats.batch_sizes.append(len(batch))
        return answers

    def _send(self, batch: list[_Entry]) -> None:
        """One shared call; if it fails and several callers share the batch, each
        caller's items are sent again on their own, so that one caller's bad item
        fails only that caller."""
        try:
            self._deliver(batch, self._call(batch))
            return
        except Exception as exc:  # handed to the callers, raised in their threads
            groups: dict[int, list[_Entry]] = {}
            for entry in batch:
                groups.setdefault(id(entry.request), []).append(entry)
            if len(groups) == 1:
                self._fail(batch, exc)
                return
        for group in groups.values():
            try:
                self._deliver(group, self._call(group))
            except Exception as exc:
                self._fail(group, exc)

    @staticmethod
    def _fail(entries: list[_Entry], exc: Exception) -> None:
        for entry in entries:
            entry.request.error = exc
            entry.request.done.set()

    @staticmethod
    def _deliver(entries: list[_Entry], answers: list[Answer]) -> None:
        for entry, answer in zip(entries, answers, strict=True):
            request = entry.request
            request.answers[entry.index] = answer
            request.remaining -= 1
            if request.remaining == 0:
                request.done.set()

    def close(self) -> None:
        """Stops the dispatcher after the queued items are sent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
