"""Words of a scene description: tokens, noun-phrase boundaries, modifier order.

The building blocks of :mod:`~imagescope.models.description_edit`: how a
description is cut into tokens and back, where a noun phrase ends (a
preposition, a verb, a participle unless a noun follows), where a modifier
goes among a noun's modifiers ("two big old red striped cotton shirts"), and
the article a phrase takes.
"""

from __future__ import annotations

import re

from imagescope.models.lexicon import can_be_noun, is_function_word, is_verb_only, parts_of_speech
from imagescope.models.word_classes import (
    COLOUR,
    COLOUR_SHADES,
    DETERMINERS,
    MASS_NOUNS,
    POSITION_PHRASE,
    POSITIONS,
    WordClass,
    article_for,
    class_of,
    count_of,
    is_plural,
    pluralize,
    singularize,
)

PREPOSITIONS = frozenset(
    "on in at under over above below behind beside near next inside outside into onto around "
    "against between by with without from along across through toward towards underneath "
    "beneath of for to off up down out during".split()
)
STOPS = PREPOSITIONS | frozenset(
    "and or but nor is are was were be been being has have had who which that where while "
    "when there as than so then".split()
)
#: Nouns that end in -ing (not verbs).
ING_NOUNS = frozenset(
    "building painting ceiling clothing wedding evening morning string spring earring stocking "
    "railing awning lighting sibling pudding ring king wing swing sing thing sling icing "
    "ceiling".split()
)
#: Closed-class words the lemma tables do not list ("hugging each other").
CLOSED_WORDS = frozenset("each other another every all both either neither such own".split())
TOKEN = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*|[^\sa-z0-9]")
BEFORE_COLOUR = frozenset({"plain", "solid"})
UNKNOWN_ORDER = 10
NOUN_ORDER = 95


def tokenize(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


def render(tokens: list[str]) -> str:
    """Tokens back to text, "a"/"an" agreeing with the next word."""
    fixed = [
        article_for(tokens[i + 1]) if t in {"a", "an"} and i + 1 < len(tokens) else t
        for i, t in enumerate(tokens)
    ]
    return re.sub(r"\s+([,.;:!?])", r"\1", " ".join(fixed)).strip(" ,;")


def is_stop(token: str) -> bool:
    """Whether a token ends a noun phrase (prepositions, verbs, punctuation, -ing verbs)."""
    if token in STOPS or not token[0].isalnum():
        return True
    if token.endswith("ing") and len(token) > 4 and token not in ING_NOUNS:
        return True
    return is_verb_only(token) and class_of(token) is None and not token.endswith("ed")


def stops_at(tokens: list[str], index: int) -> bool:
    """``is_stop`` in context: a participle ends a noun phrase unless a noun follows
    ("a car parked on a street", but "a folded shirt")."""
    token = tokens[index]
    following = tokens[index + 1] if index + 1 < len(tokens) else ","
    if token == "and" and 0 < index and class_of(tokens[index - 1]) is not None:
        return class_of(following) is None  # "a black and white shirt"
    if token.endswith("ing") and len(token) > 4 and token not in ING_NOUNS:
        # "a living room", "a swimming pool"; but "a man riding a bike"
        previous = tokens[index - 1] if index else ""
        if not (previous in DETERMINERS or class_of(previous) or count_of(previous)):
            return True  # "a woman wearing glasses": a verb after a noun
        content = not is_stop(following) and following not in DETERMINERS
        noun = can_be_noun(following) and not is_function_word(following)
        noun = noun and following not in CLOSED_WORDS
        return not (content and noun and count_of(following) is None)
    if is_stop(token):
        return True
    if following in {"a", "an", "the"} and "VERB" in parts_of_speech(token) and index > 0:
        return True  # "a man rides a motorcycle"
    if token.endswith("ed") and is_verb_only(token) and class_of(token) is None:
        return index + 1 >= len(tokens) or is_stop(tokens[index + 1])
    return False


def modifier_order(word: str) -> int:
    if word in BEFORE_COLOUR:
        return COLOUR.order - 1
    word_class = class_of(word)
    if word_class is not None:
        return word_class.order
    if count_of(word) is not None:
        return 0
    noun = "NOUN" in parts_of_speech(word) and "ADJ" not in parts_of_speech(word)
    return NOUN_ORDER if noun else UNKNOWN_ORDER  # "a tank top": "tank" stays by its noun


def position_of(phrase: str) -> str | None:
    """ "left" for "on the left", "to the left side", "left"; None when no position."""
    if (match := POSITION_PHRASE.search(phrase)) is not None:
        return match["where"]
    return phrase if phrase in POSITIONS else None


def shade_of(token: str, word_class: WordClass | None) -> bool:
    return word_class is COLOUR and token in COLOUR_SHADES


def insert_at(modifiers: list[str], order: int) -> int:
    """Where a modifier of ``order`` goes among ``modifiers`` (after determiners/counts)."""
    for index, word in enumerate(modifiers):
        if word not in DETERMINERS and count_of(word) is None and modifier_order(word) > order:
            return index
    return len(modifiers)


def inflect(words: list[str], plural: bool) -> list[str]:
    head = pluralize(words[-1]) if plural else singularize(words[-1])
    return [*words[:-1], head]


def more_of(words: list[str]) -> tuple[int, list[str]] | None:
    """ "another X" / "one more X" / "two more X" / "an extra X" -> (how many, X)."""
    if words[0] in {"another", "extra"} and len(words) > 1:
        return 1, words[1:]
    if len(words) > 2 and words[1] in {"more", "extra", "additional"}:
        number = count_of(words[0])
        if number is not None:
            return number, words[2:]
    return None


def with_article(words: list[str]) -> list[str]:
    if not words:
        return words
    cut = next((i for i, w in enumerate(words[1:], 1) if w == "of" or is_stop(w)), len(words))
    head = words[cut - 1]  # "a vase of flowers", "snow on the ground"
    if count_of(words[0]) is not None or words[0] in DETERMINERS or is_plural(head):
        return words
    if head in MASS_NOUNS or words[0] in {"many", "few", "several", "more"}:
        return words
    return [article_for(words[0]), *words]
