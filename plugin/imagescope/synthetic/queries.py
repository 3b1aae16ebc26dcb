"""Queries of the three kinds over a synthetic catalog, with exact ground truth.

Ground truth comes from the attributes, never from a model:

- text: a description that names some attributes ("two red striped squares on
  the left"); the ground truth is every item whose attributes match the named
  ones.
- composed: a reference item and one or two edits ("make it blue", "add one
  more", "remove the stripes", "move it to the right"); the ground truth is
  every item whose attributes equal the reference's after the edits (the
  reference itself never does).
- dialog: a vague caption and question/answer turns that pin the remaining
  attributes one by one; the ground truth is the target item and any item
  identical to it in every attribute (they cannot be told apart by any
  dialog about attributes).

Everything is deterministic for a given catalog and seed.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from imagescope.errors import InputError
from imagescope.schemas import ComposedQuery, DialogQuery, DialogTurn, ImageRef, TextQuery
from imagescope.synthetic.catalog import (
    ATTRIBUTES,
    NUMBER_WORDS,
    PATTERN_NOUNS,
    PLURALS,
    POSITION_PHRASES,
    VALUES,
    Attributes,
    SyntheticItem,
    describe,
    is_drawable,
)

QueryKind = Literal["text", "composed", "dialog"]
KINDS: tuple[QueryKind, ...] = ("text", "composed", "dialog")
_MAX_TRIES = 200


@dataclass(frozen=True)
class SyntheticQuery:
    """A query, the attribute constraints its answer must meet, and the exact answer set."""

    id: str
    kind: QueryKind
    query: TextQuery | ComposedQuery | DialogQuery
    #: Attribute constraints a correct item meets (all of them for composed and dialog).
    target: Mapping[str, Any]
    #: Ids of every correct catalog item, sorted; never empty.
    ground_truth: tuple[str, ...]
    reference: str | None = None


def matching_ids(catalog: Sequence[SyntheticItem], constraints: Mapping[str, Any]) -> list[str]:
    """Ids of the items whose attributes equal every given constraint, in catalog order."""
    return [
        item.id
        for item in catalog
        if all(item.attributes.get(name) == value for name, value in constraints.items())
    ]


# --------------------------------------------------------------------------- text


def text_query(
    catalog: Sequence[SyntheticItem], rng: random.Random, *, query_id: str
) -> SyntheticQuery:
    """Describe a random item by category, colour, count and 1-3 other attributes."""
    item = rng.choice(catalog)
    extra = rng.sample(["pattern", "position", "background"], rng.randint(1, 3))
    mention = {"category", "colour", "count", *extra}
    target = {a: item.attributes[a] for a in ATTRIBUTES if a in mention}
    text = describe(item.attributes, rng=rng, mention=mention)
    return SyntheticQuery(
        id=query_id,
        kind="text",
        query=TextQuery(text=text),
        target=target,
        ground_truth=tuple(sorted(matching_ids(catalog, target))),
    )


# --------------------------------------------------------------------------- composed


def _noun(attributes: Mapping[str, Any], *, plural: bool | None = None) -> str:
    many = attributes["count"] > 1 if plural is None else plural
    category = str(attributes["category"])
    return PLURALS[category] if many else category


def _pronoun(attributes: Mapping[str, Any]) -> str:
    return "them" if attributes["count"] > 1 else "it"


def _colour_edit(ref: Attributes, new: str, *, rng: random.Random) -> str:
    forms = [f"make {_pronoun(ref)} {new}", f"change the colour to {new}", f"same but {new}"]
    return rng.choice(forms)


def _count_edit(ref: Attributes, new: int, *, rng: random.Random) -> str:
    noun = _noun(ref, plural=False)
    if new > ref["count"]:
        return rng.choice([f"add one more {noun}", f"add another {noun}"])
    if ref["count"] - new == 1 and rng.random() < 0.5:
        return f"remove one {noun}"
    return f"keep only {NUMBER_WORDS[new]} {_noun(ref, plural=new > 1)}"


def _pattern_edit(ref: Attributes, new: str, *, rng: random.Random) -> str:
    old = ref["pattern"]
    if new == "plain":
        return rng.choice([f"remove the {PATTERN_NOUNS[old]}", f"without {PATTERN_NOUNS[old]}"])
    if old == "plain":
        return rng.choice([f"add {PATTERN_NOUNS[new]}", f"make {_pronoun(ref)} {new}"])
    return f"{PATTERN_NOUNS[new]} instead of {PATTERN_NOUNS[old]}"


def _position_edit(ref: Attributes, new: str, *, rng: random.Random) -> str:
    where = "the centre" if new == "centre" else f"the {new}"
    return rng.choice([f"move {_pronoun(ref)} to {where}", f"put {_pronoun(ref)} at {where}"])


def _category_edit(ref: Attributes, new: str, *, rng: random.Random) -> str:
    plural = ref["count"] > 1
    new_noun = PLURALS[new] if plural else f"a {new}"
    return rng.choice(
        [
            f"turn {_pronoun(ref)} into {new_noun}",
            f"{PLURALS[new]} instead of {_noun(ref, plural=True)}",
        ]
    )


def _background_edit(ref: Attributes, new: str, *, rng: random.Random) -> str:
    return rng.choice(
        [f"change the background to {new}", f"put {_pronoun(ref)} on a {new} background"]
    )


class _EditPhrase(Protocol):
    def __call__(self, ref: Attributes, new: Any, *, rng: random.Random) -> str: ...


_EDITS: dict[str, _EditPhrase] = {
    "colour": _colour_edit,
    "count": _count_edit,
    "pattern": _pattern_edit,
    "position": _position_edit,
    "category": _category_edit,
    "background": _background_edit,
}


def _edit_values(attributes: Mapping[str, Any], name: str) -> list[Any]:
    if name == "count":
        return [c for c in VALUES["count"] if abs(c - attributes["count"]) == 1]
    return [v for v in VALUES[name] if v != attributes[name]]


def apply_edits(
    reference: Mapping[str, Any], edits: Sequence[tuple[str, Any]], *, rng: random.Random
) -> tuple[Attributes, str]:
    """The edited attributes and the instruction that asks for them, clause by clause."""
    attrs = dict(reference)
    clauses = []
    for name, value in edits:
        clauses.append(_EDITS[name](attrs, value, rng=rng))
        attrs[name] = value
    return attrs, " and ".join(clauses)


def _draw_edits(reference: Mapping[str, Any], rng: random.Random) -> list[tuple[str, Any]]:
    names = rng.sample(list(_EDITS), 2 if rng.random() < 0.3 else 1)
    return [(name, rng.choice(_edit_values(reference, name))) for name in names]


def composed_query(
    catalog: Sequence[SyntheticItem], rng: random.Random, *, query_id: str
) -> SyntheticQuery:
    """A reference item plus edits whose result exists in the catalog."""
    for _ in range(_MAX_TRIES):
        reference = rng.choice(catalog)
        edits = _draw_edits(reference.attributes, rng)
        target, instruction = apply_edits(reference.attributes, edits, rng=rng)
        truth = matching_ids(catalog, target) if is_drawable(target) else []
        if truth:
            return SyntheticQuery(
                id=query_id,
                kind="composed",
                query=ComposedQuery(reference=ImageRef(id=reference.id), instruction=instruction),
                target=target,
                ground_truth=tuple(sorted(truth)),
                reference=reference.id,
            )
    raise InputError(
        f"no edit of {_MAX_TRIES} tried leads to an item in this {len(catalog)}-item catalog; "
        "use a larger catalog or a higher variant_rate"
    )


# --------------------------------------------------------------------------- dialog


def _turn(attributes: Mapping[str, Any], name: str) -> DialogTurn:
    value = attributes[name]
    be = "are they" if attributes["count"] > 1 else "is it"
    if name == "colour":
        return DialogTurn(question=f"what colour {be}?", answer=str(value))
    if name == "count":
        return DialogTurn(question="how many shapes are there?", answer=NUMBER_WORDS[value])
    if name == "pattern":
        answer = "no, plain" if value == "plain" else f"yes, {PATTERN_NOUNS[value]}"
        has = "do they" if attributes["count"] > 1 else "does it"
        return DialogTurn(question=f"{has} have a pattern?", answer=answer)
    if name == "position":
        return DialogTurn(question=f"where {be} in the picture?", answer=POSITION_PHRASES[value])
    if name == "background":
        return DialogTurn(question="what colour is the background?", answer=str(value))
    return DialogTurn(question=f"what shape {be}?", answer=_noun(attributes))


def dialog_query(
    catalog: Sequence[SyntheticItem], rng: random.Random, *, query_id: str
) -> SyntheticQuery:
    """A vague caption (one or two attributes), then one turn per remaining attribute."""
    item = rng.choice(catalog)
    opening = ["category"] if rng.random() < 0.5 else ["colour"]
    if rng.random() < 0.3:
        opening = ["category", "colour"]
    caption = describe(item.attributes, mention=opening)
    rest = [a for a in ATTRIBUTES if a not in opening]
    rng.shuffle(rest)
    turns = [_turn(item.attributes, name) for name in rest]
    return SyntheticQuery(
        id=query_id,
        kind="dialog",
        query=DialogQuery(caption=caption, turns=turns),
        target=dict(item.attributes),
        ground_truth=tuple(sorted(matching_ids(catalog, item.attributes))),
    )


# --------------------------------------------------------------------------- sets


class _QueryMaker(Protocol):
    def __call__(
        self, catalog: Sequence[SyntheticItem], rng: random.Random, *, query_id: str
    ) -> SyntheticQuery: ...


_MAKERS: dict[QueryKind, _QueryMaker] = {
    "text": text_query,
    "composed": composed_query,
    "dialog": dialog_query,
}


def make_queries(
    catalog: Sequence[SyntheticItem],
    *,
    n_per_kind: int,
    seed: int,
    kinds: Sequence[QueryKind] = KINDS,
) -> list[SyntheticQuery]:
    """``n_per_kind`` queries of each kind (ids ``text-000``...), deterministic by seed."""
    if not catalog:
        raise InputError("the catalog is empty; make one with make_catalog(n, seed=...)")
    unknown = [k for k in kinds if k not in _MAKERS]
    if unknown:
        raise InputError(f"unknown query kind(s) {unknown}; use {list(KINDS)}")
    queries = []
    for kind in kinds:
        rng = random.Random(f"{seed}:{kind}")
        width = max(3, len(str(n_per_kind - 1)))
        for index in range(n_per_kind):
            queries.append(_MAKERS[kind](catalog, rng, query_id=f"{kind}-{index:0{width}d}"))
    return queries
