"""Per-stage timings and per-role cost accounting on a Trace."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from imagescope.schemas import CostRecord, StageName, Trace


@contextmanager
def timed(trace: Trace, stage: StageName) -> Iterator[None]:
    """Adds the block's wall time to ``trace.timings[stage]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        trace.timings[stage.value] = trace.timings.get(stage.value, 0.0) + elapsed


def _tokens(model: Any) -> int:
    usage = getattr(model, "usage", None)
    return int(getattr(usage, "tokens", 0) or 0)


@contextmanager
def costed(trace: Trace, role: str, model: Any, *, calls: int = 1) -> Iterator[CostRecord]:
    """Counts one (or ``calls``) model calls, their seconds and tokens under ``role``.

    Tokens are read from the model's ``usage.tokens`` counter when it has one
    (the chat backends do), as the difference across the block.
    """
    record = trace.costs.setdefault(role, CostRecord())
    before = _tokens(model)
    start = time.perf_counter()
    try:
        yield record
    finally:
        record.calls += calls
        record.seconds += time.perf_counter() - start
        record.tokens += max(0, _tokens(model) - before)
