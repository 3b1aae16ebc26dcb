"""ImageScope-Judge: a small learned yes/no judge for the synthetic world.

Architecture (about 0.5 M parameters, about 1 MB in fp16):

- image encoder: three strided 3x3 convolutions and a 1x1 projection (64 px
  -> an 8 x 8 grid of 128-d cells, with a learned position embedding per
  cell, so "on the left" is readable), trained first to read every attribute
  of the scene (an auxiliary head), then frozen;
- text encoder: a word embedding over a tiny vocabulary (saved in the weights
  file) and two 1-d convolutions over the words (so "dots instead of
  stripes" reads in order), mean- and max-pooled to one 128-d vector;
- cross-attention: a query from the question attends over the grid cells
  (4 heads, the cells themselves as keys and values), beside mean and max
  pooling of the grid;
- two heads: ``verify`` (image, question) -> logit of "yes"; ``pair``
  (reference or none, candidate, instruction) -> logit of "accept", which also
  sees how the candidate's pooled features differ from the reference's.

Everything needed to answer is in one safetensors file: the fp16 weights, and
in its metadata the vocabulary and the sizes. :class:`JudgeModel` wraps it
for inference on PIL images.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL.Image import Image
from torch import nn

from imagescope.errors import ConfigError
from imagescope.synthetic.catalog import VALUES
from imagescope.synthetic.judge_data import words

MODEL_NAME = "ImageScope-Judge"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SHIPPED_JUDGE = WEIGHTS_DIR / f"{MODEL_NAME}.safetensors"
IMAGE_SIZE = 64
PAD, UNK = 0, 1
#: Number of values of each attribute, in catalog order.
GROUPS = [len(values) for values in VALUES.values()]
_MEAN, _STD = 0.5, 0.25


@dataclass(frozen=True)
class JudgeConfig:
    """Sizes of the network (stored with the weights)."""

    vocab_size: int
    width: int = 128
    word_dim: int = 64
    heads: int = 4
    max_words: int = 72


def _conv(c_in: int, c_out: int, *, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1),
        nn.GroupNorm(8, c_out),
        nn.GELU(),
    )


class JudgeNet(nn.Module):
    """The network; see the module docstring."""

    def __init__(self, config: JudgeConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.cnn = nn.Sequential(
            _conv(3, 32, stride=2), _conv(32, 48, stride=2), _conv(48, 96, stride=2)
        )
        self.cnn_out = nn.Sequential(nn.Conv2d(96, w, 1), nn.GELU())
        self.cells = nn.Parameter(torch.zeros(1, (IMAGE_SIZE // 8) ** 2, w))
        self.embed = nn.Embedding(config.vocab_size, config.word_dim, padding_idx=PAD)
        self.text_conv = nn.Sequential(
            nn.Conv1d(config.word_dim, w, 3, padding=1),
            nn.GELU(),
            nn.Conv1d(w, w, 3, padding=1),
            nn.GELU(),
        )
        self.text_out = nn.Linear(2 * w, w)
        self.query = nn.Linear(w, w)
        self.attended_out = nn.Linear(w, w)
        self.verify_head = _head(4 * w)
        self.pair_head = _head(10 * w + 1)
        #: Every attribute's value read from the pooled grid (trained first, then frozen).
        self.attribute_head = nn.Linear(2 * w, sum(GROUPS))
        #: From the text: the wanted value of each attribute and whether it is asked at all,
        #: and (with a reference) how each attribute's value maps from reference to target.
        self.wanted = nn.Linear(w, sum(GROUPS))
        self.asked = nn.Linear(w, len(GROUPS))
        self.edit = nn.Linear(w, sum(g * g for g in GROUPS))
        self.scale = nn.Parameter(torch.tensor([2.0, 2.0]))
        self.bias = nn.Parameter(torch.tensor([2.0, 2.0]))

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """(n, 3, 64, 64) -> (n, 64, width) grid cells."""
        grid: torch.Tensor = self.cnn_out(self.cnn(pixels))
        return grid.flatten(2).transpose(1, 2) + self.cells

    def encode_texts(self, tokens: torch.Tensor) -> torch.Tensor:
        """(n, L) word ids -> (n, width)."""
        mask = (tokens != PAD).unsqueeze(1).float()
        states = self.text_conv(self.embed(tokens).transpose(1, 2)) * mask
        mean = states.sum(2) / mask.sum(2).clamp(min=1.0)
        peak = (states - (1.0 - mask) * 1e4).amax(2)
        pooled: torch.Tensor = self.text_out(torch.cat([mean, peak], 1))
        return torch.tanh(pooled)

    def read(self, cells: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """What the question finds in the image: attended, mean and max cells (n, 3w)."""
        n, count, width = cells.shape
        heads = self.config.heads
        split = cells.view(n, count, heads, width // heads)
        query = self.query(text).view(n, 1, heads, width // heads)
        weights = torch.softmax((split * query).sum(-1) / math.sqrt(width // heads), dim=1)
        attended = (weights.unsqueeze(-1) * split).sum(1).reshape(n, width)
        return torch.cat([self.attended_out(attended), cells.mean(1), cells.amax(1)], 1)

    def attribute_logits(self, cells: torch.Tensor) -> torch.Tensor:
        """(n, sum of value counts) logits, attribute after attribute (catalog order)."""
        logits: torch.Tensor = self.attribute_head(torch.cat([cells.mean(1), cells.amax(1)], 1))
        return logits

    def attributes(self, cells: torch.Tensor) -> list[torch.Tensor]:
        """Per attribute, the probability of each value (n, values), catalog order."""
        return [p.softmax(1) for p in torch.split(self.attribute_logits(cells), GROUPS, dim=1)]

    def _matches(self, seen: list[torch.Tensor], target: list[torch.Tensor]) -> torch.Tensor:
        """(n, attributes) log P(the image's value is the target value)."""
        return torch.stack(
            [torch.log((s * t).sum(1).clamp(min=1e-6)) for s, t in zip(seen, target, strict=True)],
            1,
        )

    def _described(self, cells: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Sum over the attributes the text asks about of log P(match)."""
        target = [w.softmax(1) for w in torch.split(self.wanted(text), GROUPS, dim=1)]
        asked = torch.sigmoid(self.asked(text))
        return (asked * self._matches(self.attributes(cells), target)).sum(1)

    def verify_logits(self, cells: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Yes when every asked attribute matches, plus a learned residual on attention."""
        seen = self.read(cells, text)
        residual: torch.Tensor = self.verify_head(torch.cat([seen, text], 1)).squeeze(1)
        return self.bias[0] + self.scale[0] * self._described(cells, text) + residual

    def _edited(
        self, candidate: torch.Tensor, reference: torch.Tensor, text: torch.Tensor
    ) -> torch.Tensor:
        """Sum of log P(match) of the candidate against the reference mapped by the edit."""
        maps = torch.split(self.edit(text), [g * g for g in GROUPS], dim=1)
        target = [
            torch.bmm(r.unsqueeze(1), m.view(-1, g, g).softmax(2)).squeeze(1)
            for r, m, g in zip(self.attributes(reference), maps, GROUPS, strict=True)
        ]
        return self._matches(self.attributes(candidate), target).sum(1)

    def pair_logits(
        self,
        candidate: torch.Tensor,
        reference: torch.Tensor,
        has_ref: torch.Tensor,
        text: torch.Tensor,
    ) -> torch.Tensor:
        """Accept when the candidate is the reference edited as the text says (or, without
        a reference, when it is what the text describes); ``has_ref`` 0 ignores ``reference``."""
        seen = self.read(candidate, text)
        ref = self.read(reference, text) * has_ref.unsqueeze(1)
        diff = (seen - ref).abs() * has_ref.unsqueeze(1)
        features = torch.cat([seen, ref, diff, text, has_ref.unsqueeze(1)], 1)
        residual: torch.Tensor = self.pair_head(features).squeeze(1)
        symbolic = has_ref * self._edited(candidate, reference, text) + (1 - has_ref) * (
            self._described(candidate, text)
        )
        return self.bias[1] + self.scale[1] * symbolic + residual


def _head(width_in: int) -> nn.Sequential:
    """A residual head; its last layer starts at zero."""
    out = nn.Linear(256, 1)
    nn.init.zeros_(out.weight)
    nn.init.zeros_(out.bias)
    return nn.Sequential(nn.Linear(width_in, 256), nn.GELU(), out)


# --------------------------------------------------------------------------- text and pixels


class Vocabulary:
    """Word -> id; 0 pads, 1 is any unknown word."""

    def __init__(self, words_in_order: Sequence[str]) -> None:
        self.words = list(words_in_order)
        self.ids = {w: i + 2 for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words) + 2

    def encode(self, texts: Sequence[str], *, max_words: int) -> torch.Tensor:
        rows = [[self.ids.get(w, UNK) for w in words(t)][:max_words] or [UNK] for t in texts]
        out = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.long)
        for i, row in enumerate(rows):
            out[i, : len(row)] = torch.tensor(row)
        return out


def to_pixels(images: Sequence[Image]) -> torch.Tensor:
    """PIL images -> normalised (n, 3, 64, 64) float tensor."""
    arrays = []
    for image in images:
        rgb = image.convert("RGB")
        if rgb.size != (IMAGE_SIZE, IMAGE_SIZE):
            rgb = rgb.resize((IMAGE_SIZE, IMAGE_SIZE))
        arrays.append(np.asarray(rgb, dtype=np.uint8))
    return normalise(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2))


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (n, 3, H, W) -> float, centred."""
    return (pixels.float() / 255.0 - _MEAN) / _STD


# --------------------------------------------------------------------------- files


def save_judge(net: JudgeNet, vocab: Vocabulary, path: Path, *, extra: dict[str, str]) -> Path:
    """fp16 weights and, in the metadata, the vocabulary and sizes; atomic."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in net.state_dict().items()}
    metadata = {
        "model": MODEL_NAME,
        "config": json.dumps(asdict(net.config)),
        "vocabulary": json.dumps(vocab.words),
        **extra,
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def load_judge(path: Path | None = None) -> tuple[JudgeNet, Vocabulary]:
    """The network (eval mode, float32) and vocabulary of a judge file (default: shipped)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = path or SHIPPED_JUDGE
    if not path.is_file():
        raise ConfigError(
            f"no {MODEL_NAME} weights at {path}; train them with "
            "`python -m imagescope.synthetic.judge_train`"
        )
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("model") != MODEL_NAME:
        raise ConfigError(
            f"{path} is not an {MODEL_NAME} file (metadata {metadata.get('model')!r})"
        )
    net = JudgeNet(JudgeConfig(**json.loads(metadata["config"])))
    net.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    net.eval()
    return net, Vocabulary(json.loads(metadata["vocabulary"]))


class JudgeModel:
    """Inference on PIL images: P(yes) for questions, P(accept) for pairs."""

    def __init__(self, path: Path | None = None, *, batch_size: int = 256) -> None:
        self.path = path or SHIPPED_JUDGE
        self.net, self.vocab = load_judge(self.path)
        self.batch_size = batch_size

    def _cells(self, images: Sequence[Image]) -> tuple[torch.Tensor, list[int]]:
        """Grid cells of each distinct image object once, and each input's row."""
        rows: dict[int, int] = {}
        unique: list[Image] = []
        for image in images:
            if id(image) not in rows:
                rows[id(image)] = len(unique)
                unique.append(image)
        chunks = [
            self.net.encode_images(to_pixels(unique[i : i + self.batch_size]))
            for i in range(0, len(unique), self.batch_size)
        ]
        return torch.cat(chunks), [rows[id(image)] for image in images]

    def _texts(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.vocab.encode(texts, max_words=self.net.config.max_words)
        return self.net.encode_texts(tokens)

    @torch.inference_mode()
    def p_yes(self, images: Sequence[Image], questions: Sequence[str]) -> list[float]:
        """P(yes) for each (image, question) pair."""
        if not images:
            return []
        cells, rows = self._cells(images)
        out: list[float] = []
        for i in range(0, len(rows), self.batch_size):
            index = torch.tensor(rows[i : i + self.batch_size])
            logits = self.net.verify_logits(
                cells[index], self._texts(questions[i : i + self.batch_size])
            )
            out += torch.sigmoid(logits).tolist()
        return out

    @torch.inference_mode()
    def p_accept(
        self,
        references: Sequence[Image | None],
        candidates: Sequence[Image],
        instructions: Sequence[str],
    ) -> list[float]:
        """P(the candidate is what the instruction asks, of the reference if given)."""
        if not candidates:
            return []
        cells, rows = self._cells(candidates)
        given = [r for r in references if r is not None]
        ref_cells, ref_rows = self._cells(given) if given else (cells[:1] * 0, [])
        ref_index, position = [], iter(ref_rows)
        for reference in references:
            ref_index.append(next(position) if reference is not None else 0)
        has_ref = torch.tensor([float(r is not None) for r in references])
        logits = self.net.pair_logits(
            cells[torch.tensor(rows)],
            ref_cells[torch.tensor(ref_index)],
            has_ref,
            self._texts(instructions),
        )
        return torch.sigmoid(logits).tolist()
