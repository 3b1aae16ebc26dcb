"""Reading a yes/no answer: from first-token log-probabilities, or from the text."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping


def add_logprob(logprobs: dict[str, float], token: str, *, logprob: float) -> None:
    """Add a token's log-probability; distinct token ids that decode alike are summed."""
    if token not in logprobs:
        logprobs[token] = logprob
        return
    high, low = max(logprobs[token], logprob), min(logprobs[token], logprob)
    logprobs[token] = high + math.log1p(math.exp(low - high)) if math.isfinite(low) else high


_TOKEN_JUNK = " \t\n\u2581\u0120\u010a.,!:;\"'*`"


def yes_probability(first_token_logprobs: Mapping[str, float]) -> float | None:
    """P(yes) / (P(yes) + P(no)) over the first token's top log-probabilities.

    Case and leading-space variants (" Yes", "yes", "YES", "▁yes") are summed.
    None when neither word is among the top tokens.
    """
    p_yes = p_no = 0.0
    for token, logprob in first_token_logprobs.items():
        word = token.strip(_TOKEN_JUNK).lower()
        if word in ("yes", "no") and math.isfinite(logprob):
            if word == "yes":
                p_yes += math.exp(logprob)
            else:
                p_no += math.exp(logprob)
    total = p_yes + p_no
    return p_yes / total if total > 0.0 else None


LEADING_YES_NO = re.compile(r"^[\W_]*(yes|no)\b", re.IGNORECASE)


def parse_yes_no(text: str) -> bool | None:
    """Yes/no from the reply text (its first word); None when it is neither."""
    match = LEADING_YES_NO.match(text)
    return None if match is None else match.group(1).lower() == "yes"
