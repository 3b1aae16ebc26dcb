"""Training questions for the learned judge, with labels read off exact attributes.

A question's label comes from the attributes it states, never from a model:
:func:`constraints` reads every attribute value a question or instruction names
("the two pink dotted crosses at the bottom on a white background" -> count 2,
colour pink, pattern dotted, category cross, position bottom, background
white), and the judge's answer is yes only when the image has all of them (a
question about a wrong presupposition is answered no, as "Are the three
striped crosses purple?" is about an image of plain crosses).

Questions come in two phrasings, half each:

- the pipeline's own: the rule reasoner's in-context checks of a description
  (:func:`~imagescope.models.rule_propositions.description_checks`), which is
  what stage 2 asks;
- short paraphrases about one or two attributes ("Are there exactly three
  shapes?", "Is the background navy?", "Are the shapes circles?", "Do they have
  stripes?").

Pairwise samples (for the stage-3 head) are a reference, an instruction and a
candidate from the generator's own edits (:func:`~imagescope.synthetic.queries.apply_edits`):
the candidate has the edited attributes or misses one of them (the edit
undone, or another attribute changed). Without a reference, the instruction is
a text query's description or a dialog's turns, as the pipeline passes them.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from imagescope.models.rule_propositions import description_checks
from imagescope.pipeline.stage1 import instruction_of
from imagescope.synthetic.catalog import (
    ATTRIBUTES,
    BACKGROUNDS,
    COLOURS,
    NUMBER_WORDS,
    PLURALS,
    POSITION_PHRASES,
    VALUES,
    Attributes,
    SyntheticItem,
    describe,
    is_drawable,
)
from imagescope.synthetic.queries import apply_edits, dialog_query, text_query

_WORD = re.compile(r"[a-z]+|[0-9]+")
_NUMBERS = {w: n for n, w in NUMBER_WORDS.items()} | {"1": 1, "2": 2, "3": 3}
_NOUNS = {c: c for c in VALUES["category"]} | {p: c for c, p in PLURALS.items()}
_PATTERN_WORDS = {"striped": "striped", "stripes": "striped", "dotted": "dotted", "dots": "dotted"}
_POSITION_WORDS = {p: p for p in VALUES["position"]} | {"center": "centre", "middle": "centre"}
_NEGATIONS = frozenset({"no", "not", "without"})


def words(text: str) -> list[str]:
    """Lower-case word tokens (the judge's tokenizer splits the same way)."""
    return _WORD.findall(text.lower())


def _word_value(word: str, previous: str) -> tuple[str, Any] | None:
    if word in COLOURS:
        return "colour", word
    if word in BACKGROUNDS:
        return "background", word
    if word in _NOUNS:
        return "category", _NOUNS[word]
    if word in _NUMBERS:
        return "count", _NUMBERS[word]
    if word in _PATTERN_WORDS and previous not in _NEGATIONS:
        return "pattern", _PATTERN_WORDS[word]
    if word == "plain" or (word == "pattern" and previous in _NEGATIONS):
        return "pattern", "plain"
    if word in _POSITION_WORDS:
        return "position", _POSITION_WORDS[word]
    return None


def constraints(text: str) -> dict[str, Any] | None:
    """Every attribute value ``text`` names; None when it names two values of one attribute."""
    found: dict[str, Any] = {}
    tokens = words(text)
    for index, word in enumerate(tokens):
        named = _word_value(word, tokens[index - 1] if index else "")
        if named is None:
            continue
        name, value = named
        if found.get(name, value) != value:
            return None
        found[name] = value
    return found


def holds(attributes: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    return all(attributes.get(name) == value for name, value in wanted.items())


# --------------------------------------------------------------------------- questions


def _be(attributes: Mapping[str, Any]) -> tuple[str, str]:
    plural = attributes["count"] > 1
    return ("are", "shapes") if plural else ("is", "shape")


def paraphrase(attributes: Mapping[str, Any], name: str, rng: random.Random) -> str:
    """A short question about one attribute of ``attributes``, in varied words."""
    be, shapes = _be(attributes)
    value = attributes[name]
    subject = rng.choice([f"the {shapes}", "they" if be == "are" else "it"])
    if name == "count":
        noun = "shape" if value == 1 else "shapes"
        return rng.choice(
            [
                f"Are there exactly {NUMBER_WORDS[value]} {noun}?",
                f"Is the number of shapes {NUMBER_WORDS[value]}?",
                f"Do you see {NUMBER_WORDS[value]} {noun}?",
            ]
        ).replace("Are there exactly one", "Is there exactly one")
    if name == "colour":
        return rng.choice([f"{be.capitalize()} {subject} {value}?", f"Is the colour {value}?"])
    if name == "category":
        noun = PLURALS[value] if be == "are" else f"a {value}"
        return rng.choice([f"{be.capitalize()} {subject} {noun}?", f"Is there a {value}?"])
    if name == "pattern":
        if value == "plain":
            return rng.choice([f"{be.capitalize()} {subject} plain?", "Is there no pattern?"])
        nouns = "stripes" if value == "striped" else "dots"
        return rng.choice([f"{be.capitalize()} {subject} {value}?", f"Are there {nouns}?"])
    if name == "position":
        return f"{be.capitalize()} {subject} {POSITION_PHRASES[value]}?"
    return rng.choice([f"Is the background {value}?", f"Is the background colour {value}?"])


def pipeline_questions(
    attributes: Mapping[str, Any], mention: Sequence[str], rng: random.Random
) -> list[str]:
    """The rule reasoner's checks of a description of ``attributes`` naming ``mention``."""
    text = describe(attributes, rng=rng, mention=mention)
    checks = description_checks(text, counted=rng.random() < 0.3)
    return [c.proposition.question for c in checks]


def _mention(rng: random.Random) -> list[str]:
    """What a description names: category and colour mostly, then a random rest."""
    base = [a for a in ("category", "colour") if rng.random() < 0.85]
    rest = [a for a in ATTRIBUTES if a not in base and rng.random() < 0.55]
    return base + rest or ["category"]


def _perturb(
    attributes: Mapping[str, Any], names: Sequence[str], rng: random.Random, *, changes: int
) -> Attributes:
    """``attributes`` with ``changes`` of ``names`` set to other values (drawable)."""
    while True:
        out = dict(attributes)
        for name in rng.sample(list(names), min(changes, len(names))):
            out[name] = rng.choice([v for v in VALUES[name] if v != attributes[name]])
        if is_drawable(out):
            return out


@dataclass(frozen=True)
class Sample:
    """One training example: images by pool index (-1: no reference), text and label."""

    image: int
    text: str
    label: float
    reference: int = -1
    #: With a reference: the value index of each attribute the edit asks for (catalog order).
    target: tuple[int, ...] = ()


def verify_samples(
    pool: Sequence[SyntheticItem], index: int, rng: random.Random, *, per_image: int = 3
) -> list[Sample]:
    """Questions about pool image ``index``: of itself, or of a description 1-2 values off."""
    attributes = pool[index].attributes
    mention = _mention(rng)
    roll = rng.random()
    changes = 0 if roll < 0.45 else (1 if roll < 0.9 else 2)
    described = _perturb(attributes, mention, rng, changes=changes) if changes else attributes
    if rng.random() < 0.5:
        questions = pipeline_questions(described, mention, rng)
    else:
        questions = [paraphrase(described, rng.choice(mention), rng) for _ in range(per_image)]
    out = []
    for question in rng.sample(questions, min(per_image, len(questions))):
        wanted = constraints(question)
        if wanted is not None:
            out.append(Sample(index, question, float(holds(attributes, wanted))))
    return out


# --------------------------------------------------------------------------- pairs


def attribute_codes(pool: Sequence[SyntheticItem]) -> np.ndarray:
    """(n, 6) value indices of the pool's attributes, for fast matching."""
    return np.array(
        [[VALUES[a].index(item.attributes[a]) for a in ATTRIBUTES] for item in pool],
        dtype=np.int8,
    )


def _near(codes: np.ndarray, wanted: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Pool indices matching ``wanted`` exactly, and those off by exactly one value."""
    columns = [ATTRIBUTES.index(a) for a in wanted]
    target = np.array([VALUES[a].index(v) for a, v in wanted.items()], dtype=np.int8)
    misses = (codes[:, columns] != target).sum(axis=1)
    return np.flatnonzero(misses == 0), np.flatnonzero(misses == 1)


def _edit_values(attributes: Mapping[str, Any], name: str) -> list[Any]:
    if name == "count":
        return [c for c in VALUES["count"] if abs(c - attributes["count"]) == 1]
    return [v for v in VALUES[name] if v != attributes[name]]


def _pair(
    instruction: str,
    codes: np.ndarray,
    wanted: Mapping[str, Any],
    rng: random.Random,
    *,
    reference: int = -1,
) -> list[Sample]:
    matches, misses = _near(codes, wanted)
    matches = matches[matches != reference]
    out = []
    if len(matches):
        out.append(Sample(int(rng.choice(list(matches))), instruction, 1.0, reference))
    if len(misses):
        out.append(Sample(int(rng.choice(list(misses))), instruction, 0.0, reference))
    return out


def composed_samples(
    pool: Sequence[SyntheticItem], codes: np.ndarray, rng: random.Random
) -> list[Sample]:
    """A reference, an edit instruction, and a candidate that has or misses the edit."""
    reference = rng.randrange(len(pool))
    attributes = pool[reference].attributes
    names = rng.sample(list(ATTRIBUTES), 2 if rng.random() < 0.3 else 1)
    edits = [(name, rng.choice(_edit_values(attributes, name))) for name in names]
    target, instruction = apply_edits(attributes, edits, rng=rng)
    if not is_drawable(target):
        return []
    out = _pair(instruction, codes, target, rng, reference=reference)
    if rng.random() < 0.2:  # the reference itself never satisfies an edit
        out.append(Sample(reference, instruction, 0.0, reference))
    wanted = tuple(VALUES[a].index(target[a]) for a in ATTRIBUTES)
    return [replace(sample, target=wanted) for sample in out]


def described_samples(
    pool: Sequence[SyntheticItem], codes: np.ndarray, rng: random.Random
) -> list[Sample]:
    """A text query's description or a dialog's turns, and a candidate that fits or not."""
    item = pool[rng.randrange(len(pool))]
    maker = text_query if rng.random() < 0.5 else dialog_query
    query = maker([item], rng, query_id="train")
    return _pair(instruction_of(query.query), codes, query.target, rng)
