"""Which stages a request may ask for (light: the CLI checks them before loading models)."""

from __future__ import annotations

from collections.abc import Sequence

from imagescope.errors import InputError

STAGES = (1, 2, 3)
#: Stage -> the name of the stage set scored after it (eval and the synthetic bench).
STAGE_SETS = {1: "1", 2: "1+2", 3: "1+2+3"}


def check_stages(stages: Sequence[int]) -> list[int]:
    """The requested stages, sorted; they must include 1 and be among 1, 2, 3."""
    wanted = sorted(set(stages))
    if not wanted or any(s not in STAGES for s in wanted) or wanted[0] != 1:
        raise InputError(f"stages must include 1 and be among 1, 2, 3; got {list(stages)}")
    return wanted


def check_rerank_stages(stages: Sequence[int]) -> list[int]:
    """The later stages of a rerank job: 2 and/or 3 (a 1 among them is ignored)."""
    wanted = sorted({s for s in stages if s != 1})
    if not wanted or any(s not in (2, 3) for s in wanted):
        raise InputError(f"a rerank job runs stages 2 and/or 3; got {list(stages)}")
    return wanted
