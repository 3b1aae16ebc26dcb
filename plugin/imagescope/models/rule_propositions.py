"""Yes/no propositions for the rule reasoner.

Two sources, merged without repeating a check:

- the target description: its subject is split into one question per
  attribute it states, each asked *in context* so that a judge compares
  whole descriptions that differ in one value: "Are the two squares on the
  left pink?" (colour), "Are the two pink squares on a white background on
  the left?" (position), "Are there two pink squares on the left?" (count),
  "Are the two pink shapes on the left squares?" (kind);
- the atomic edits: what was added, removed or replaced ("Is there an
  oven?" -> no), and, without a description, the edited attributes.

Each check carries a key (noun, aspect) so that an edit does not ask again
what the description already asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from imagescope.models.description_edit import (
    PREPOSITIONS,
    Description,
    is_stop,
    position_of,
    tokenize,
)
from imagescope.models.word_classes import (
    DETERMINERS,
    NOUN_CLASSES,
    PATTERN,
    PATTERN_NOUNS,
    PLACEHOLDER_NOUNS,
    POSITION_PHRASE,
    PRONOUNS,
    WordClass,
    article_for,
    class_of,
    class_of_phrase,
    count_of,
    count_word,
    is_attribute_word,
    is_plural,
    pluralize,
    position_phrase,
    singularize,
)
from imagescope.schemas import AtomicEdit, EditKind, Proposition

#: Comparative -> the adjective a single image can be asked about.
COMPARATIVES = {
    "bigger": "big", "larger": "large", "smaller": "small", "longer": "long",
    "shorter": "short", "taller": "tall", "wider": "wide", "brighter": "bright",
    "darker": "dark", "lighter": "light", "older": "old", "younger": "young",
    "closer": "close", "thicker": "thick", "thinner": "thin", "more": "many",
    "less": "few", "fewer": "few",
}  # fmt: skip
#: What "it" stands for when nothing was described: never asked about.
_PLACEHOLDERS = frozenset({"image", "picture", "photo", "it", "them", "they"})
_MASS = frozenset("water grass snow sand food hair sky smoke fire rain text writing".split())


class Check(NamedTuple):
    """A proposition and the (noun, aspect) it checks."""

    key: tuple[str, str]
    proposition: Proposition


def ask(noun: str, aspect: str, *, subject: str, predicate: str, expected: bool = True) -> Check:
    """ "Is/Are <subject> <predicate>?" with the matching statement; ``subject``
    "there" makes an existence check ("Is there a dog?" / "There is no dog.")."""
    be = "are" if is_plural(noun) else "is"
    subject, predicate = " ".join(subject.split()), " ".join(predicate.split())
    if subject == "there":
        negated = f"no {_bare(predicate)}" if not expected else predicate
        statement = f"There {be} {negated}."
    else:
        statement = (
            f"{subject[0].upper()}{subject[1:]} {be} {'' if expected else 'not '}{predicate}."
        )
    question = f"{be.capitalize()} {subject} {predicate}?"
    proposition = Proposition(statement=statement, question=question, expected=expected)
    return Check((singularize(noun.rsplit("-", 1)[-1]), aspect), proposition)


def _bare(phrase: str) -> str:
    words = phrase.split()
    return " ".join(words[1:]) if words[:1] in (["a"], ["an"]) else phrase


def _kind(noun: str) -> WordClass | None:
    return next((c for c in NOUN_CLASSES if singularize(noun) in c.words), None)


class _Subject(NamedTuple):
    """A description's subject, read into its parts."""

    head: str
    number: int | None
    values: dict[str, str]  # class name -> value words
    others: list[str]  # modifiers of no class
    position: str
    phrases: list[str]  # what follows the subject, phrase by phrase

    def noun_phrase(self, *, without: str = "") -> str:
        number = [count_word(self.number)] if self.number is not None else []
        kept = [v for name, v in self.values.items() if name != without]
        return " ".join([*number, *self.others, *kept, self.head])

    def context(self, *, position: bool = True, skip: str = "") -> str:
        parts = [self.position] if position and self.position else []
        return " ".join(p for p in [*parts, *self.phrases] if p and p != skip)


def _read_subject(description: str) -> _Subject | None:
    scene = Description(description)
    head = scene.subject()
    if head is None:
        return None
    start, end = scene.span(head)
    values: dict[str, str] = {}
    others: list[str] = []
    for word in scene.modifiers(head):
        word_class = class_of(word)
        if count_of(word) is not None:
            continue
        if word_class is None:
            others.append(word)
        else:
            values[word_class.name] = f"{values.get(word_class.name, '')} {word}".strip()
    trailing = scene.tokens[head + 1 : end]
    if trailing:
        values[PATTERN.name] = "plain" if "no" in trailing else PATTERN_NOUNS[trailing[-1]]
    rest = " ".join(scene.tokens[end:])
    where = POSITION_PHRASE.search(rest) or POSITION_PHRASE.search(" ".join(scene.tokens[:start]))
    numbers = [count_of(t) for t in scene.tokens[start:head] if t not in {"a", "an"}]
    count = next((n for n in numbers if n is not None), None)
    phrases = _phrases(POSITION_PHRASE.sub(" ", rest))
    return _Subject(scene.tokens[head], count, values, others, where[0] if where else "", phrases)


def _phrases(text: str) -> list[str]:
    """Prepositional and participial phrases of a text, in order ("on a rug", "standing")."""
    phrases: list[str] = []
    for token in tokenize(text):
        opens = (token in PREPOSITIONS and token != "of") or (is_stop(token) and token.isalpha())
        if (opens and token not in {"and", "or"}) or not phrases:
            phrases.append(token)
        else:
            phrases[-1] += f" {token}" if token[0].isalnum() else token
    return [p.strip(" ,") for p in phrases if p.strip(" ,")]


def description_checks(description: str, *, counted: bool = False) -> list[Check]:
    """One in-context question per attribute the description's subject has;
    ``counted`` asks the count even when the description says only "a"."""
    subject = _read_subject(description)
    if subject is None or subject.head in PRONOUNS or is_attribute_word(subject.head):
        return []  # not a description ("make them blue")
    head, context, whole = subject.head, subject.context(), subject.noun_phrase()
    checks = [
        ask(
            head,
            name,
            subject=f"the {subject.noun_phrase(without=name)} {context}",
            predicate=value,
        )
        for name, value in subject.values.items()
    ]
    if subject.position:
        where = f"the {whole} {subject.context(position=False)}"
        checks.append(ask(head, "position", subject=where, predicate=subject.position))
    for phrase in subject.phrases:
        checks += _phrase_checks(
            head, phrase, subject=f"the {whole} {subject.context(skip=phrase)}"
        )
    if subject.number is not None or counted:
        one = subject._replace(number=subject.number or 1)
        checks.append(
            ask(head, "count", subject="there", predicate=f"{one.noun_phrase()} {context}")
        )
    if (kind := _kind(head)) is not None:
        plural = is_plural(head)
        hypernym = subject._replace(head=pluralize(kind.name) if plural else kind.name)
        value = head if plural else f"{article_for(head)} {head}"
        checks.append(
            ask(head, "kind", subject=f"the {hypernym.noun_phrase()} {context}", predicate=value)
        )
    return checks


def _phrase_checks(head: str, phrase: str, *, subject: str) -> list[Check]:
    """ "on a white background" with one class word: the whole description with the
    phrase last; with several: one question per class word about the phrase's noun."""
    words = phrase.split()
    named = [(w, c) for w in words if (c := class_of(w)) is not None and c not in NOUN_CLASSES]
    if not named:
        return []
    if len(named) == 1:  # keyed like "Is the background white?"
        check = ask(head, named[0][1].name, subject=subject, predicate=phrase)
        return [check._replace(key=(singularize(words[-1]), named[0][1].name))]
    noun = [w for w in words[1:] if w not in DETERMINERS]
    return [attribute(" ".join(w for w in noun if w != value), value) for value, _ in named]


# --------------------------------------------------------------------------- edits


def _article(phrase: str) -> str:
    """ "a cat", "an owl"; plural, mass and determined phrases stay bare."""
    words = phrase.split()
    if not words:
        return phrase
    first, last = words[0], words[-1]
    if is_plural(last) or first in DETERMINERS or count_of(first) or last in _MASS:
        return phrase
    return f"{article_for(first)} {phrase}"


def presence(element: str, *, expected: bool) -> Check:
    """ "Is there a dog?" / "Are there dogs?" (expected yes or no)."""
    noun = element.split()[-1]
    aspect = "kind" if _kind(noun) is not None else "presence"
    return ask(noun, aspect, subject="there", predicate=_article(element), expected=expected)


def attribute(element: str, value: str, *, expected: bool = True) -> Check:
    """ "Is the dress red?" (keyed by the value's class)."""
    noun = element.split()[-1] if element else "it"
    word_class = class_of_phrase(value)
    name = word_class.name if word_class is not None else value
    return ask(noun, name, subject=f"the {element}", predicate=value, expected=expected)


def _core(element: str) -> str:
    kept = [w for w in element.split() if class_of(w) is None and w not in DETERMINERS]
    return " ".join(kept) or element


def _modification_checks(element: str, detail: str) -> list[Check]:
    noun = element.split()[-1]
    if count_of(detail) is not None and len(detail.split()) == 1:
        return []  # the description's count check covers it
    if (where := position_of(detail)) is not None:
        return [ask(noun, "position", subject=f"the {element}", predicate=position_phrase(where))]
    if detail.split()[0] in PREPOSITIONS:
        return _phrase_checks(noun, detail, subject=f"the {element}")
    if all(is_attribute_word(w) for w in detail.split()):
        return [attribute(_core(element), detail)]
    replaced = noun in _PLACEHOLDERS or _kind(noun) is not None
    return [
        presence(detail, expected=True),
        *([] if replaced else [presence(element, expected=False)]),
    ]


def edit_checks(edit: AtomicEdit, *, subject: str) -> list[Check]:
    """The checks one edit implies; ``subject`` is the description's subject noun
    (what placeholders such as "the shapes" stand for)."""
    words = edit.element.split()
    if not words:
        return []
    if words[-1] in PLACEHOLDER_NOUNS and edit.kind is not EditKind.ADDITION:
        words = [*words[:-1], subject]
    element = " ".join(words)
    detail = edit.detail.split()
    new_pattern = (
        edit.kind is EditKind.MODIFICATION and bool(detail) and detail[-1] in PATTERN_NOUNS
    )
    if new_pattern or (words[-1] in PATTERN_NOUNS and edit.kind is not EditKind.MODIFICATION):
        # "with stripes", "no dots", "dots instead of stripes": the subject's pattern.
        shown = edit.detail if new_pattern else element
        check = presence(shown, expected=edit.kind is not EditKind.REMOVAL)
        return [check._replace(key=(singularize(subject), PATTERN.name))]
    if edit.kind is EditKind.REMOVAL:
        counted = len(words) > 1 and count_of(words[0]) is not None
        return [] if counted else [presence(element, expected=False)]
    if edit.kind is EditKind.MODIFICATION:
        return _modification_checks(element, edit.detail) if edit.detail else []
    if edit.kind is EditKind.COMPARISON and (base := COMPARATIVES.get(edit.detail)):
        if base in {"many", "few"}:
            return [
                ask(
                    words[-1],
                    "many",
                    subject="there",
                    predicate=f"many {element}",
                    expected=base == "many",
                )
            ]
        return [presence(element, expected=True), attribute(_core(element), base)]
    more = words[0] in {"another", "extra"} or "more" in words
    if more or words[-1] in _PLACEHOLDERS or words[-1] in PRONOUNS:
        return []
    return [presence(element, expected=True)]


def merge(checks: Sequence[Check]) -> list[Proposition]:
    """Propositions in order, the first check of each key and question kept."""
    keys: set[tuple[str, str]] = set()
    questions: set[str] = set()
    kept: list[Proposition] = []
    for check in checks:
        question = check.proposition.question.lower()
        if check.key in keys or question in questions:
            continue
        keys.add(check.key)
        questions.add(question)
        kept.append(check.proposition)
    return kept
