"""open_clip's text forward, run only as far as each prompt's end-of-text token.

open_clip's ``CLIP.encode_text`` always runs all ``context_length`` token
positions (77 for the OpenAI-style towers): it adds the whole positional
table and the whole causal mask, although CLIP prompts are mostly 10 to 20
tokens and the rest is padding. Under the causal mask a position never
attends to a later one, and the text vector is read at the end-of-text
(argmax) token; so positions after the last end-of-text token of the batch
change nothing, and cutting them off gives the same vectors up to float
rounding, at a fraction of the cost (the tower's cost is linear in the
length, bar attention). Rows are grouped by their own length (rounded up to
``LENGTH_STEP``), one forward per group, so a long prompt does not make the
short ones of its batch run long.

``trimmed_text_encoder`` returns that forward for the standard CLIP text
tower only (``open_clip.model.CLIP`` with its own ``encode_text``, argmax
pooling, a strictly causal float mask, positional table and mask of the
context length) and None for any other tower (``CustomTextCLIP``, Hugging
Face text towers, CoCa, other pooling, no causal mask): those keep
``encode_text``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from open_clip.model import CLIP
from open_clip.transformer import Transformer

#: Trimmed lengths are rounded up to a multiple of this (fewer forward calls).
LENGTH_STEP = 8
TextEncoder = Callable[[torch.Tensor], torch.Tensor]


def _strictly_causal(mask: object, context: int) -> bool:
    """A float (context x context) mask that blocks every later position."""
    if not isinstance(mask, torch.Tensor) or not mask.is_floating_point():
        return False
    if mask.shape != (context, context):
        return False
    later = torch.ones(context, context, dtype=torch.bool, device=mask.device).triu(1)
    return bool(torch.isneginf(mask[later]).all())


def is_standard_text_tower(model: object) -> bool:
    """Whether ``model.encode_text`` is open_clip's CLIP text forward with a causal
    mask and argmax pooling (the case ``trimmed_text_encoder`` is exact for)."""
    if not isinstance(model, CLIP) or type(model).encode_text is not CLIP.encode_text:
        return False
    if model.text_pool_type != "argmax" or not isinstance(model.transformer, Transformer):
        return False
    context = int(model.context_length)
    positional = model.positional_embedding
    if positional.ndim != 2 or positional.shape[0] != context:
        return False
    return _strictly_causal(model.attn_mask, context)


def trimmed_lengths(tokens: torch.Tensor, *, context: int) -> torch.Tensor:
    """Positions to run per row: up to its end-of-text (argmax) token, rounded up to
    LENGTH_STEP, at most ``context``."""
    ends = tokens.argmax(dim=-1) + 1
    return torch.clamp(
        torch.div(ends + LENGTH_STEP - 1, LENGTH_STEP, rounding_mode="floor") * LENGTH_STEP,
        max=context,
    )


def trimmed_text_encoder(model: object) -> TextEncoder | None:
    """``model.encode_text`` cut to the prompts' own lengths (see the module
    docstring); None when ``model`` is not the standard CLIP text tower."""
    if not is_standard_text_tower(model):
        return None
    assert isinstance(model, CLIP)
    return lambda tokens: _encode(model, tokens)


def _encode(model: CLIP, tokens: torch.Tensor) -> torch.Tensor:
    """CLIP.encode_text, each group of rows of one trimmed length in one forward."""
    context = int(model.context_length)
    if tokens.ndim != 2 or tokens.shape[1] != context:
        whole: torch.Tensor = model.encode_text(tokens)  # open_clip decides what this means
        return whole
    lengths = trimmed_lengths(tokens, context=context)
    groups = [(int(n), torch.nonzero(lengths == n).squeeze(1)) for n in torch.unique(lengths)]
    if len(groups) == 1:
        return _forward(model, tokens, groups[0][0])
    parts = [(rows, _forward(model, tokens[rows], length)) for length, rows in groups]
    out = parts[0][1].new_empty((tokens.shape[0], parts[0][1].shape[1]))
    for rows, part in parts:
        out[rows] = part
    return out


def _forward(model: CLIP, tokens: torch.Tensor, length: int) -> torch.Tensor:
    """CLIP.encode_text (open_clip 3.x) on the first ``length`` positions; exact when
    every row's end-of-text token lies within them (the mask is causal)."""
    cast_dtype = model.transformer.get_cast_dtype()
    x: torch.Tensor = model.token_embedding(tokens[:, :length]).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
    projection = model.text_projection
    if projection is None:
        return x
    if isinstance(projection, torch.nn.Linear):
        x = projection(x)
        return x
    x = x @ projection
    return x
