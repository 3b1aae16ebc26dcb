"""The trimmed text forward equals open_clip's own encode_text, and only the
standard CLIP text tower takes it (every other tower keeps encode_text)."""

from __future__ import annotations

from typing import Any

import numpy as np
import open_clip
import pytest
import torch
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg, CustomTextCLIP

from imagescope.models.open_clip_text import (
    LENGTH_STEP,
    is_standard_text_tower,
    trimmed_lengths,
    trimmed_text_encoder,
)

pytestmark = pytest.mark.unit

PROMPTS = [
    "a photo",
    "a photo of two pink squares on the left",
    "a photo where the small red circle is not at the top of a grey background",
    "red",
]
LONG = "a very long caption that runs past the end of the context " * 12
VISION = CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=16, image_size=32)


def _model(model_class: type[Any] = CLIP, **text: Any) -> Any:
    torch.manual_seed(0)
    cfg = CLIPTextCfg(**{"width": 64, "heads": 4, "layers": 3, **text})
    model = model_class(embed_dim=32, vision_cfg=VISION, text_cfg=cfg)
    return model.eval()


def _tokens(texts: list[str]) -> torch.Tensor:
    return open_clip.get_tokenizer("ViT-B-32")(texts)


def _positions_run(model: CLIP, tokens: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """The trimmed encoder's output and the positions of each transformer run."""
    seen: list[int] = []
    hook = model.transformer.register_forward_pre_hook(
        lambda _module, args: seen.append(args[0].shape[1])
    )
    try:
        encode = trimmed_text_encoder(model)
        assert encode is not None
        with torch.inference_mode():
            out = encode(tokens)
    finally:
        hook.remove()
    return out, seen


@pytest.mark.parametrize(
    "text",
    [{}, {"qk_norm": True, "scale_fc": True}, {"proj_type": "none", "width": 32}],
    ids=["standard", "custom-block", "no-projection"],
)
@pytest.mark.parametrize("texts", [PROMPTS, [*PROMPTS, LONG]], ids=["short", "with-long"])
def test_trimmed_forward_equals_encode_text(text: dict[str, Any], texts: list[str]) -> None:
    model = _model(**text)
    tokens = _tokens(texts)
    with torch.inference_mode():
        full = model.encode_text(tokens)
    trimmed, ran = _positions_run(model, tokens)
    assert trimmed.shape == full.shape
    torch.testing.assert_close(trimmed, full, atol=2e-5, rtol=1e-5)
    ends = (tokens.argmax(dim=-1) + 1).tolist()
    lengths = trimmed_lengths(tokens, context=77).tolist()
    assert sorted(ran) == sorted(set(lengths))  # one run per length group
    for end, length in zip(ends, lengths, strict=True):
        assert end <= length < end + LENGTH_STEP or length == 77
    assert min(ran) < 77  # the point: fewer positions than the context
    assert (max(ran) == 77) == (LONG in texts)


def test_trimmed_lengths_reach_each_end_token() -> None:
    tokens = torch.zeros(3, 77, dtype=torch.long)
    tokens[0, :3] = torch.tensor([49406, 320, 49407])
    tokens[1, :10] = 5
    tokens[1, 9] = 49407
    tokens[2, :77] = 5
    tokens[2, 76] = 49407  # a prompt cut at the context: end token last
    assert trimmed_lengths(tokens, context=77).tolist() == [8, 16, 77]


class _OwnEncodeText(CLIP):
    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return super().encode_text(text, normalize=normalize) * 2


@pytest.mark.parametrize(
    ("model_class", "text"),
    [
        (CLIP, {"pool_type": "last"}),
        (CLIP, {"no_causal_mask": True}),
        (CustomTextCLIP, {}),
        (_OwnEncodeText, {}),
    ],
    ids=["last-token-pooling", "no-causal-mask", "custom-text-tower", "own-encode-text"],
)
def test_other_text_towers_fall_back(model_class: type[Any], text: dict[str, Any]) -> None:
    model = _model(model_class, **text)
    assert not is_standard_text_tower(model)
    assert trimmed_text_encoder(model) is None


def test_a_mask_that_lets_positions_see_ahead_falls_back() -> None:
    model = _model()
    assert is_standard_text_tower(model)
    model.attn_mask[3, 40] = 0.0
    assert not is_standard_text_tower(model)


def test_embedder_trims_texts_and_untrimmed_is_the_baseline(tiny_open_clip: Any) -> None:
    assert tiny_open_clip.trim_texts
    baseline = tiny_open_clip.untrimmed()
    assert not baseline.trim_texts and baseline.model_id == tiny_open_clip.model_id
    texts = [*PROMPTS, LONG, ""]
    np.testing.assert_allclose(
        tiny_open_clip.embed_texts(texts), baseline.embed_texts(texts), atol=1e-5
    )
    assert tiny_open_clip.trim_texts  # the copy left the original alone
