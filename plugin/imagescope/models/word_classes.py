"""Generic English word classes for the rule-based backends.

An attribute class is a set of mutually exclusive values a thing can have
(colours, patterns, sizes, materials, positions in the frame...). The rule
reasoner uses the classes to *replace* an old value by a new one ("make the
red dress blue"); the CLIP judges use them to build contrasts ("a blue dress"
against "a red dress", "a green dress"...), which CLIP scores far more
reliably than a negation. Also here: counts as words, noun number
(singular/plural) and position phrases.

Nothing here knows any particular catalog: the words are ordinary English.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imagescope.models.lexicon import plural_of, singular_of


@dataclass(frozen=True)
class WordClass:
    """One attribute class.

    ``words``: every word that expresses a value of the class. ``contrast``:
    the values a judge compares a claimed value against (the asked value is
    added when missing). ``order``: where the value goes among a noun's
    modifiers, smaller first ("two big old red striped cotton shirts").
    """

    name: str
    words: frozenset[str]
    contrast: tuple[str, ...]
    order: int


def _cls(name: str, contrast: str, *, order: int, others: str = "") -> WordClass:
    values = tuple(contrast.split())
    return WordClass(name, frozenset(values + tuple(others.split())), values, order)


#: Colour words; "dark", "light"... before a colour belong to it ("dark blue").
COLOUR = _cls(
    "colour",
    "red orange yellow green blue purple pink brown black white grey",
    order=50,
    others="gray beige gold golden silver navy teal maroon cream tan khaki turquoise violet "
    "magenta cyan ivory burgundy olive lavender lilac coral multicoloured multicolored",
)
COLOUR_SHADES = frozenset("dark light pale bright deep pastel neon".split())
#: "plain" and "solid" precede a colour in English ("a plain white shirt").
PATTERN = _cls(
    "pattern",
    "plain striped dotted checked floral",
    order=60,
    others="solid spotted checkered plaid patterned printed polka-dot",
)
MATERIAL = _cls(
    "material",
    "wooden metal leather cotton denim glass plastic",
    order=70,
    others="wood metallic silk wool woolen woollen paper stone ceramic velvet linen lace "
    "knitted suede",
)
SIZE = _cls("size", "big small", order=20, others="large tiny huge little giant")
LENGTH = _cls("length", "long short", order=22)
HEIGHT = _cls("height", "tall", order=24)
WIDTH = _cls("width", "wide narrow", order=26)
THICKNESS = _cls("thickness", "thick thin", order=28)
AGE = _cls("age", "young old", order=30, others="new")
WEATHER = _cls("weather", "sunny cloudy rainy snowy foggy", order=40)
#: Nouns of one kind: "turn the squares into circles" swaps one for another.
SHAPE = _cls(
    "shape",
    "circle square triangle star diamond cross",
    order=90,
    others="rectangle heart oval hexagon",
)
ADJECTIVE_CLASSES: tuple[WordClass, ...] = (
    COLOUR,
    PATTERN,
    MATERIAL,
    SIZE,
    LENGTH,
    HEIGHT,
    WIDTH,
    THICKNESS,
    AGE,
    WEATHER,
)
NOUN_CLASSES: tuple[WordClass, ...] = (SHAPE,)
#: Words naming a class rather than a value: "change the colour to red".
CLASS_NAMES: dict[str, WordClass] = {
    "colour": COLOUR, "color": COLOUR, "shade": COLOUR, "pattern": PATTERN, "print": PATTERN,
    "material": MATERIAL, "fabric": MATERIAL, "size": SIZE, "length": LENGTH,
    "shape": SHAPE,
}  # fmt: skip
#: Other common adjectives: recognised as modifiers, no class to swap in.
OTHER_ADJECTIVES = frozenset(
    "shiny bright round empty full open closed wet dry fluffy cute pretty beautiful "
    "sleeveless casual formal fancy modern vintage busy quiet crowded colorful colourful".split()
)
#: Pattern nouns and the adjective that says the same ("with stripes" = "striped").
PATTERN_NOUNS = {
    "stripes": "striped", "stripe": "striped", "dots": "dotted", "dot": "dotted",
    "spots": "spotted", "checks": "checked", "flowers": "floral", "florals": "floral",
    "pattern": "patterned", "patterns": "patterned", "print": "printed", "prints": "printed",
}  # fmt: skip
#: Nouns that stand for "whatever the main subject is" ("how many shapes are there?").
PLACEHOLDER_NOUNS = frozenset(
    "shape shapes thing things object objects item items one ones figure figures".split()
)
#: Nouns said without "a" ("with snow", "with pasta").
MASS_NOUNS = frozenset(
    "snow grass water sand food rain fog mist smoke fire hair fur light sunlight pasta rice "
    "bread milk wine coffee tea meat cheese ice mud dirt grass foliage furniture clothing "
    "lettering writing text".split()
)
PRONOUNS = frozenset("it they them this that these those its their itself".split())

NUMBERS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10,
}  # fmt: skip
NUMBER_WORDS = {n: w for w, n in NUMBERS.items()}
DETERMINERS = frozenset("a an the some any this that these those his her its their my our".split())

#: Where in the frame: word -> the preposition English uses with it.
POSITIONS = {
    "left": "on", "right": "on", "top": "at", "bottom": "at", "centre": "in", "center": "in",
    "middle": "in",
}  # fmt: skip
_POSITION_WORD = "|".join(POSITIONS)
#: "on the left", "to the right side of the picture", "in the centre": any preposition.
POSITION_PHRASE = re.compile(
    rf"\b(?:on|to|at|in|towards?)\s+the\s+(?P<where>{_POSITION_WORD})"
    r"(?:\s+side)?(?:\s+of\s+the\s+(?:picture|image|photo|frame))?\b"
)
POSITION_CONTRAST = ("left", "right", "top", "bottom", "centre")

_BY_WORD: dict[str, WordClass] = {w: c for c in ADJECTIVE_CLASSES + NOUN_CLASSES for w in c.words}
_IRREGULAR = {
    "man": "men", "woman": "women", "child": "children", "person": "people", "foot": "feet",
    "tooth": "teeth", "mouse": "mice", "goose": "geese", "knife": "knives", "leaf": "leaves",
    "wolf": "wolves", "shelf": "shelves", "life": "lives", "wife": "wives",
}  # fmt: skip
_SINGULAR = {p: s for s, p in _IRREGULAR.items()}
_INVARIANT = frozenset("sheep fish deer species series clothes glasses jeans pants".split())


def class_of(word: str) -> WordClass | None:
    """The attribute class of one word (a value or a shade of colour), if any."""
    if word in COLOUR_SHADES:
        return COLOUR
    return _BY_WORD.get(word)


def class_of_phrase(phrase: str) -> WordClass | None:
    """The class of an attribute phrase ("dark blue", "striped"), from its last word."""
    words = phrase.split()
    return class_of(words[-1]) if words else None


def is_attribute_word(word: str) -> bool:
    """An adjective the rules understand: a class value, a shade or a common adjective."""
    word_class = class_of(word)
    return (word_class is not None and word_class not in NOUN_CLASSES) or word in OTHER_ADJECTIVES


def position_phrase(where: str) -> str:
    """ "left" -> "on the left", "top" -> "at the top", "middle" -> "in the middle"."""
    return f"{POSITIONS[where]} the {where}"


def count_of(word: str) -> int | None:
    """1 for "a"/"an"/"one"/"another"... the number a count word says, else None."""
    if word in {"a", "an", "single"}:
        return 1
    if word.isdigit():
        return int(word)
    return NUMBERS.get(word)


def count_word(count: int) -> str:
    return NUMBER_WORDS.get(count, str(count))


def pluralize(noun: str) -> str:
    """ "cross" -> "crosses", "berry" -> "berries", "man" -> "men"; plurals are kept."""
    if noun in _IRREGULAR:
        return _IRREGULAR[noun]
    if noun in _INVARIANT or noun in _SINGULAR or is_plural(noun):
        return noun
    if (known := plural_of(noun)) is not None and known.endswith("s"):
        return known
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if len(noun) > 1 and noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def singularize(noun: str) -> str:
    """ "crosses" -> "cross", "berries" -> "berry", "men" -> "man"; singulars are kept."""
    if noun in _SINGULAR:
        return _SINGULAR[noun]
    if noun in _INVARIANT or not is_plural(noun):
        return noun
    if (known := singular_of(noun)) is not None:
        return known
    if noun.endswith("ies") and len(noun) > 4:
        return noun[:-3] + "y"
    if noun.endswith(("sses", "xes", "zes", "ches", "shes")):
        return noun[:-2]
    return noun[:-1]


def is_plural(noun: str) -> bool:
    if noun in _SINGULAR or noun in {"people", "clothes", "jeans", "pants", "glasses"}:
        return True
    if noun in _IRREGULAR or noun in _INVARIANT:
        return False
    if singular_of(noun) is not None:
        return True
    return noun.endswith("s") and not noun.endswith(("ss", "us", "is", "ous"))


def same_noun(a: str, b: str) -> bool:
    """Whether two words name one noun, whatever their number ("cross" / "crosses"),
    a compound matching its head ("t-shirt" / "shirt")."""
    a, b = a.rsplit("-", 1)[-1], b.rsplit("-", 1)[-1]
    return a == b or singularize(a) == singularize(b)


def article_for(word: str) -> str:
    """ "a" or "an" before ``word`` (by its first letter; "an hour" is not handled)."""
    return "an" if word[:1] in set("aeiou") else "a"
