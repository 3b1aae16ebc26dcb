"""Edit a scene description word by word: the caption editor of the rule reasoner.

A description ("two red striped squares on the left on a white background",
"a woman in a long blue dress standing in a park") is read as English noun
phrases: a run of modifiers ending in a head noun, with its determiner or
count in front ("the two", "a"), an optional trailing pattern ("with
stripes") and prepositional phrases after it. The *subject* is the first
noun phrase (after a leading "there is" or position phrase).

:class:`Description` changes one thing at a time and keeps everything else:
an attribute replaces the old value of its class (colour, pattern, size...),
a count re-inflects the noun, a replacement keeps the old noun's modifiers
and number, a position or place phrase replaces the old one. An element the
description does not mention is appended ("with long sleeves", "on a navy
background"). Deterministic, no model.
"""

from __future__ import annotations

import re

from imagescope.models.lexicon import can_be_noun, is_function_word, is_verb_only
from imagescope.models.word_classes import (
    COLOUR,
    COLOUR_SHADES,
    DETERMINERS,
    PATTERN,
    PATTERN_NOUNS,
    PLACEHOLDER_NOUNS,
    POSITION_PHRASE,
    POSITIONS,
    PRONOUNS,
    WordClass,
    article_for,
    class_of,
    class_of_phrase,
    count_of,
    count_word,
    is_plural,
    pluralize,
    position_phrase,
    same_noun,
    singularize,
)

PREPOSITIONS = frozenset(
    "on in at under over above below behind beside near next inside outside into onto around "
    "against between by with without from along across through toward towards underneath "
    "beneath of for to off up down out during".split()
)
_STOPS = PREPOSITIONS | frozenset(
    "and or but nor is are was were be been being has have had who which that where while "
    "when there as than so then".split()
)
#: Nouns that end in -ing (not verbs).
ING_NOUNS = frozenset(
    "building painting ceiling clothing wedding evening morning string spring earring stocking "
    "railing awning lighting sibling pudding ring king wing swing sing thing sling icing "
    "ceiling".split()
)
_TOKEN = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*|[^\sa-z0-9]")
_LEADING = re.compile(r"^(?:(?:there\s+(?:is|are)|(?:a|an|the)\s+(?:photo|picture|image)\s+of)\s+)")
#: "plain"/"solid" go before a colour ("a plain white shirt"), other patterns after it.
_BEFORE_COLOUR = frozenset({"plain", "solid"})
_UNKNOWN_ORDER = 10


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def render(tokens: list[str]) -> str:
    """Tokens back to text, "a"/"an" agreeing with the next word."""
    fixed = [
        article_for(tokens[i + 1]) if t in {"a", "an"} and i + 1 < len(tokens) else t
        for i, t in enumerate(tokens)
    ]
    return re.sub(r"\s+([,.;:!?])", r"\1", " ".join(fixed)).strip(" ,;")


def is_stop(token: str) -> bool:
    """Whether a token ends a noun phrase (prepositions, verbs, punctuation, -ing verbs)."""
    if token in _STOPS or not token[0].isalnum():
        return True
    if token.endswith("ing") and len(token) > 4 and token not in ING_NOUNS:
        return True
    return is_verb_only(token) and class_of(token) is None and not token.endswith("ed")


def stops_at(tokens: list[str], index: int) -> bool:
    """``is_stop`` in context: a participle ends a noun phrase unless a noun follows
    ("a car parked on a street", but "a folded shirt")."""
    token = tokens[index]
    following = tokens[index + 1] if index + 1 < len(tokens) else ","
    if token.endswith("ing") and len(token) > 4 and token not in ING_NOUNS:
        # "a living room", "a swimming pool"; but "a man riding a bike"
        content = not is_stop(following) and following not in DETERMINERS
        noun = can_be_noun(following) and not is_function_word(following)
        return not (content and noun and count_of(following) is None)
    if is_stop(token):
        return True
    if token.endswith("ed") and is_verb_only(token) and class_of(token) is None:
        return index + 1 >= len(tokens) or is_stop(tokens[index + 1])
    return False


def _order(word: str) -> int:
    if word in _BEFORE_COLOUR:
        return COLOUR.order - 1
    word_class = class_of(word)
    if word_class is not None:
        return word_class.order
    return 0 if count_of(word) is not None else _UNKNOWN_ORDER


class Description:
    """A description being edited; ``str(description)`` gives the current text."""

    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)

    def __str__(self) -> str:
        return render(self.tokens)

    # ------------------------------------------------------------------ reading

    def subject(self) -> int | None:
        """Index of the head noun of the first noun phrase, or None."""
        text = " ".join(self.tokens)
        skip = len(m[0].split()) if (m := _LEADING.match(text)) else 0
        if (place := POSITION_PHRASE.match(" ".join(self.tokens[skip:]))) is not None:
            skip += len(place[0].split())
        index = skip
        while index < len(self.tokens) and stops_at(self.tokens, index):
            index += 1
        head = None
        while index < len(self.tokens) and not stops_at(self.tokens, index):
            head, index = index, index + 1
        return head

    def find(self, element: str | None) -> int | None:
        """The head of the phrase naming ``element``; pronouns and absent
        placeholders ("it", "the shapes") mean the subject."""
        words = [w for w in tokenize(element or "") if w not in DETERMINERS]
        if not words or words[-1] in PRONOUNS:
            return self.subject()
        head = words[-1]
        for index, token in enumerate(self.tokens):
            if same_noun(token, head) and not self._is_modifier(index):
                return index
        return self.subject() if head in PLACEHOLDER_NOUNS else None

    def _is_modifier(self, index: int) -> bool:
        return index + 1 < len(self.tokens) and not stops_at(self.tokens, index + 1)

    def span(self, head: int) -> tuple[int, int]:
        """(start, end) of the noun phrase around ``head``; the end covers a
        trailing pattern phrase ("with stripes", "with no pattern")."""
        start = head
        while start > 0 and not stops_at(self.tokens, start - 1):
            start -= 1
            if self.tokens[start] in DETERMINERS:
                break
            if count_of(self.tokens[start]) is not None:  # a count opens the phrase
                if start > 0 and self.tokens[start - 1] in DETERMINERS:
                    start -= 1
                break
        return start, head + 1 + self._trailing_pattern(head)

    def _trailing_pattern(self, head: int) -> int:
        rest = self.tokens[head + 1 : head + 5]
        if len(rest) < 2 or rest[0] not in {"with", "without"}:
            return 0
        size = 2 if rest[1] in {"no", "a", "some"} and len(rest) > 2 else 1
        if rest[size] in PATTERN_NOUNS or rest[size] == "polka":
            return size + 1 + (rest[size] == "polka")
        return 0

    def count(self, head: int) -> int | None:
        """What the phrase says about how many: "two" -> 2, "a" -> 1, a bare plural -> None."""
        start, _ = self.span(head)
        for token in self.tokens[start:head]:
            if (number := count_of(token)) is not None:
                return number
        return None if is_plural(self.tokens[head]) else 1

    def modifiers(self, head: int) -> list[str]:
        start, _ = self.span(head)
        return [t for t in self.tokens[start:head] if t not in DETERMINERS]

    # ------------------------------------------------------------------ editing

    def set_attribute(self, element: str | None, value: str) -> None:
        """Give ``element`` (None: the subject) the attribute ``value``, replacing
        any value of the same class; "on the left" style values move it."""
        value_words = tokenize(value)
        if not value_words:
            return
        if position_of(value) is not None:
            self.place(element, value)
            return
        head = self.find(element)
        if head is None:
            self._append_attribute(element, value)
            return
        word_class = class_of_phrase(value)
        start, end = self.span(head)
        if word_class is PATTERN:
            del self.tokens[head + 1 : end]
        kept = [
            t
            for t in self.tokens[start:head]
            if word_class is None or not (class_of(t) is word_class or _shade_of(t, word_class))
        ]
        if set(value_words) <= set(kept):
            kept = [t for t in kept if t not in value_words]
        at = _insert_at(kept, _order(value_words[-1]))
        kept[at:at] = value_words
        self.tokens[start:head] = kept

    def _append_attribute(self, element: str | None, value: str) -> None:
        words = [w for w in tokenize(element or "") if w not in DETERMINERS]
        if not words:
            self.tokens[:0] = tokenize(value)
            return
        if words[-1] in {"background", "backdrop"}:
            phrase = f"on {article_for(value)} {value} {' '.join(words)}"
        else:
            phrase = f"with {value} {' '.join(words)}"
        self.tokens += tokenize(phrase)

    def set_count(self, element: str | None, count: int) -> None:
        """Make ``element`` number ``count``, re-inflecting its noun."""
        head = self.find(element)
        if head is None:
            words = [w for w in tokenize(element or "") if w not in DETERMINERS]
            if words:
                self.tokens += ["with", count_word(count), *_inflect(words, count > 1)]
            return
        start, _ = self.span(head)
        self.tokens[head] = (
            pluralize(self.tokens[head]) if count > 1 else singularize(self.tokens[head])
        )
        phrase = self.tokens[start:head]
        counted = [i for i, t in enumerate(phrase) if count_of(t) is not None]
        word = count_word(count) if count > 1 else "a"
        if counted:
            phrase[counted[0]] = word
        elif phrase[:1] and phrase[0] in DETERMINERS:
            phrase[1:1] = [word] if count > 1 else []
        else:
            phrase[:0] = [word]
        self.tokens[start:head] = phrase

    def shift_count(self, element: str | None, delta: int) -> bool:
        """Add ``delta`` to a known count; False when the count is unknown."""
        head = self.find(element)
        now = None if head is None else self.count(head)
        if head is None or now is None:
            return False
        if now + delta < 1:
            self.remove(self.tokens[head])
        else:
            self.set_count(self.tokens[head], now + delta)
        return True

    def replace(self, element: str | None, new: str) -> None:
        """Put ``new`` in place of ``element``'s noun; its modifiers and number stay
        unless ``new`` says otherwise ("a cat" for "the dog", "crosses" for "stars")."""
        head = self.find(element)
        words = [w for w in tokenize(new) if w not in DETERMINERS]
        if head is None or not words:
            self.add(new)
            return
        if len(words) > 3 or any(is_stop(w) for w in words):  # a phrase: it takes the place
            start, end = self.span(head)
            self.tokens[start:end] = _with_article(tokenize(new))
            return
        number = count_of(words[0]) if len(words) > 1 else None
        plural = is_plural(self.tokens[head]) if number is None else number > 1
        self.tokens[head] = pluralize(words[-1]) if plural else singularize(words[-1])
        for modifier in words[int(number is not None) : -1]:
            self.set_attribute(self.tokens[head], modifier)
            found = self.find(words[-1])
            head = head if found is None else found
        if number is not None:
            self.set_count(self.tokens[head], number)

    def remove(self, element: str) -> None:
        """Take ``element`` out: a pattern becomes "plain", "one X" lowers X's count,
        anything else is dropped with its connector ("with a dog")."""
        words = [w for w in tokenize(element) if w not in DETERMINERS]
        if not words:
            return
        if words[-1] in PATTERN_NOUNS:
            self.set_attribute(self._patterned(), "plain")
            return
        number = count_of(words[0]) if len(words) > 1 else None
        if number is not None:  # "remove one X": fewer X, or X as it is when uncounted
            self.shift_count(words[-1], -number)
            return
        head = self.find(words[-1]) if words[-1] not in PRONOUNS else None
        if head is None:
            return
        start, end = self.span(head)
        if start > 0 and self.tokens[start - 1] in {"with", "and", "holding", "wearing"}:
            start -= 1
        elif end < len(self.tokens) and self.tokens[end] in {"and", "with"}:
            end += 1
        del self.tokens[start:end]

    def _patterned(self) -> str | None:
        """The noun that carries a pattern adjective now ("striped shirt"), else the subject."""
        for index, token in enumerate(self.tokens):
            if class_of(token) is PATTERN:
                head = index
                while head + 1 < len(self.tokens) and not stops_at(self.tokens, head + 1):
                    head += 1
                return self.tokens[head]
        return None

    def add(self, phrase: str, *, where: str = "") -> None:
        """Add what ``phrase`` names: "another X" raises X's count, a pattern
        noun sets the pattern, a thing not yet mentioned is appended (followed by
        ``where`` it goes: "with a cat on the sofa")."""
        words = tokenize(phrase)
        words = words[1:] if words[:1] and words[0] in {"the", "some", "any"} else words
        if not words:
            return
        more = _more(words)
        if more:
            delta, rest = more
            if self.find(rest[-1]) is not None and self.shift_count(rest[-1], delta):
                return
            words = [article_for(rest[0]), *rest] if delta == 1 else [count_word(delta), *rest]
        if words[-1] in PATTERN_NOUNS and len(words) <= 3:
            self.set_attribute(None, PATTERN_NOUNS[words[-1]])
            return
        if not words[-1][0].isalnum():
            return
        if self.find(words[-1]) is not None:  # there already: "long sleeves" makes them long
            for word in words[:-1]:
                if class_of(word) is not None:
                    self.set_attribute(words[-1], word)
            return
        self.tokens += [",", "with", *_with_article(words), *tokenize(where)]

    def place(self, element: str | None, phrase: str) -> None:
        """Put ``element`` (None: the subject) at a position ("on the left") or
        place ("on a navy background"), replacing the phrase of the same kind."""
        where = position_of(phrase)
        if where is not None:
            self.tokens = tokenize(POSITION_PHRASE.sub(" ", " ".join(self.tokens)))
            new = tokenize(position_phrase(where))
        else:
            new = tokenize(phrase)
            if not self._replace_place(new):
                self.tokens += new
            return
        head = self.find(element)
        at = len(self.tokens) if head is None else self.span(head)[1]
        self.tokens[at:at] = new

    def _replace_place(self, new: list[str]) -> bool:
        """Swap an existing prepositional phrase whose noun is ``new``'s noun."""
        index = self.find(new[-1]) if len(new) > 1 else None
        if index is None or index == self.subject():
            return False
        start, end = self.span(index)
        if start == 0 or self.tokens[start - 1] not in PREPOSITIONS:
            return False
        self.tokens[start - 1 : end] = new
        return True


def position_of(phrase: str) -> str | None:
    """ "left" for "on the left", "to the left side", "left"; None when no position."""
    if (match := POSITION_PHRASE.search(phrase)) is not None:
        return match["where"]
    return phrase if phrase in POSITIONS else None


def _shade_of(token: str, word_class: WordClass | None) -> bool:
    return word_class is COLOUR and token in COLOUR_SHADES


def _insert_at(modifiers: list[str], order: int) -> int:
    """Where a modifier of ``order`` goes among ``modifiers`` (after determiners/counts)."""
    for index, word in enumerate(modifiers):
        if word not in DETERMINERS and count_of(word) is None and _order(word) > order:
            return index
    return len(modifiers)


def _inflect(words: list[str], plural: bool) -> list[str]:
    head = pluralize(words[-1]) if plural else singularize(words[-1])
    return [*words[:-1], head]


def _more(words: list[str]) -> tuple[int, list[str]] | None:
    """ "another X" / "one more X" / "two more X" / "an extra X" -> (how many, X)."""
    if words[0] in {"another", "extra"} and len(words) > 1:
        return 1, words[1:]
    if len(words) > 2 and words[1] in {"more", "extra", "additional"}:
        number = count_of(words[0])
        if number is not None:
            return number, words[2:]
    return None


def _with_article(words: list[str]) -> list[str]:
    if not words:
        return words
    if count_of(words[0]) is not None or words[0] in DETERMINERS or is_plural(words[-1]):
        return words
    return [article_for(words[0]), *words]
