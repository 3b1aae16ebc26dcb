"""Input bounds of the HTTP API (``settings.limits``): each refusal names its limit.

Checked before any work is done for the request, so an oversized query costs
nothing: text length and dialog turns for every query, candidates and
propositions for a client-supplied stage-1 result.
"""

from __future__ import annotations

from imagescope.errors import InputError
from imagescope.schemas import ComposedQuery, DialogQuery, Query, SearchResult, TextQuery
from imagescope.settings import LimitSettings


class LimitExceededError(InputError):
    """A request asks for more than a configured limit allows."""

    status_code = 422


def _over(what: str, size: int, limit: int, name: str) -> LimitExceededError:
    return LimitExceededError(
        f"{what} is {size}; the limit is {limit} (limits.{name}, IMAGESCOPE_LIMITS__{name.upper()})"
    )


def _texts(query: Query) -> list[tuple[str, str]]:
    if isinstance(query, TextQuery):
        return [("query text", query.text)]
    if isinstance(query, ComposedQuery):
        return [("query instruction", query.instruction)]
    assert isinstance(query, DialogQuery)
    texts = [("dialog caption", query.caption)]
    for n, turn in enumerate(query.turns, 1):
        texts += [(f"dialog turn {n} question", turn.question)]
        texts += [(f"dialog turn {n} answer", turn.answer)]
    return texts


def check_query(query: Query, limits: LimitSettings) -> None:
    """Text lengths (characters) and dialog turns."""
    if isinstance(query, DialogQuery) and len(query.turns) > limits.max_dialog_turns:
        raise _over("the number of dialog turns", len(query.turns), limits.max_dialog_turns,
                    "max_dialog_turns")  # fmt: skip
    for what, text in _texts(query):
        if len(text) > limits.max_query_chars:
            raise _over(f"the {what}'s length in characters", len(text), limits.max_query_chars,
                        "max_query_chars")  # fmt: skip


def check_stage1(result: SearchResult, limits: LimitSettings) -> None:
    """A supplied stage-1 result: its candidates and the propositions in its trace."""
    if len(result.candidates) > limits.max_candidates:
        raise _over("the number of stage-1 candidates", len(result.candidates),
                    limits.max_candidates, "max_candidates")  # fmt: skip
    propositions = len(result.trace.propositions)
    if propositions > limits.max_propositions:
        raise _over("the number of propositions", propositions, limits.max_propositions,
                    "max_propositions")  # fmt: skip
