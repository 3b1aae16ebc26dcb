"""open_clip's text forward, run only as far as the longest prompt of a batch.

open_clip's ``CLIP.encode_text`` always runs all ``context_length`` token
positions (77 for the OpenAI-style towers): it adds the whole positional
table and the whole causal mask, although CLIP prompts are mostly 10 to 20
tokens and the rest is padding. Under the causal mask a position never
attends to a later one, and the text vector is read at the end-of-text
(argmax) token; so positions after the last end-of-text token of the batch
change nothing, and cutting them off gives the same vectors up to float
rounding, at a fraction of the cost (the tower's cost is linear in the
length, bar attention).

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

#: Trimmed lengths are rounded up to a multiple of this (fewer distinct shapes).
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


def trimmed_length(tokens: torch.Tensor, *, context: int) -> int:
    """Positions to run: up to the last end-of-text token, rounded up to LENGTH_STEP."""
    last = int(tokens.argmax(dim=-1).max()) + 1
    return min(context, -(-last // LENGTH_STEP) * LENGTH_STEP)


def trimmed_text_encoder(model: object) -> TextEncoder | None:
    """``model.encode_text`` cut to the longest prompt of each batch (see the
    module docstring); None when ``model`` is not the standard CLIP text tower."""
    if not is_standard_text_tower(model):
        return None
    assert isinstance(model, CLIP)
    return lambda tokens: _encode(model, tokens)


def _encode(model: CLIP, tokens: torch.Tensor) -> torch.Tensor:
    """CLIP.encode_text (open_clip 3.x) on the first ``trimmed_length`` positions."""
    context = int(model.context_length)
    if tokens.ndim != 2 or tokens.shape[1] != context:
        whole: torch.Tensor = model.encode_text(tokens)  # open_clip decides what this means
        return whole
    length = trimmed_length(tokens, context=context)
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
