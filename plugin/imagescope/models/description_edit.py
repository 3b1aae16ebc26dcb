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
background"). Deterministic, no model. The word-level pieces (tokens,
phrase boundaries, modifier order) are in :mod:`~imagescope.models.phrase_words`.
"""

from __future__ import annotations

import re

from imagescope.models.phrase_words import (
    ING_NOUNS,
    NOUN_ORDER,
    PREPOSITIONS,
    UNKNOWN_ORDER,
    inflect,
    insert_at,
    is_stop,
    modifier_order,
    more_of,
    position_of,
    render,
    shade_of,
    stops_at,
    tokenize,
    with_article,
)
from imagescope.models.word_classes import (
    COLOUR,
    COLOUR_SHADES,
    DETERMINERS,
    PATTERN,
    PATTERN_NOUNS,
    PLACEHOLDER_NOUNS,
    POSITION_PHRASE,
    PRONOUNS,
    article_for,
    class_of,
    class_of_phrase,
    count_of,
    count_word,
    is_attribute_word,
    is_plural,
    pluralize,
    position_phrase,
    same_noun,
    singularize,
)

__all__ = [
    "ING_NOUNS",
    "PREPOSITIONS",
    "Description",
    "is_stop",
    "position_of",
    "render",
    "tokenize",
]

_LEADING = re.compile(r"^(?:(?:there\s+(?:is|are)|(?:a|an|the)\s+(?:photo|picture|image)\s+of)\s+)")


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
        if all(w in COLOUR_SHADES for w in value_words):  # "darker": a dark shade of its colour
            kept = [t for t in self.tokens[start:head] if t not in COLOUR_SHADES]
            colours = [i for i, t in enumerate(kept) if class_of(t) is COLOUR]
            at = colours[0] if colours else insert_at(kept, COLOUR.order)
            self.tokens[start:head] = kept[:at] + value_words + kept[at:]
            return
        if word_class is PATTERN:
            del self.tokens[head + 1 : end]
        kept = [
            t
            for t in self.tokens[start:head]
            if word_class is None or not (class_of(t) is word_class or shade_of(t, word_class))
        ]
        if set(value_words) <= set(kept):
            kept = [t for t in kept if t not in value_words]
        at = insert_at(kept, modifier_order(value_words[-1]))
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
                self.tokens += ["with", count_word(count), *inflect(words, count > 1)]
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
            self.tokens[start:end] = with_article(tokenize(new))
            return
        number = count_of(words[0]) if len(words) > 1 else None
        plural = is_plural(self.tokens[head]) if number is None else number > 1
        if not same_noun(self.tokens[head], words[-1]):  # "a birthday cake" -> "a bus"
            start, _ = self.span(head)
            kept = [
                t
                for t in self.tokens[start:head]
                if t in DETERMINERS
                or modifier_order(t) not in (UNKNOWN_ORDER, NOUN_ORDER)
                or is_attribute_word(t)
            ]
            self.tokens[start:head], head = kept, start + len(kept)
        self.tokens[head] = pluralize(words[-1]) if plural else singularize(words[-1])
        for modifier in words[int(number is not None) : -1]:
            if class_of(modifier) is None and not is_attribute_word(modifier):  # "pickup truck"
                self.tokens[head:head] = [modifier]
                head += 1
                continue
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
        while words[:1] and words[0] in {"the", "some", "any", "with"}:
            words = words[1:]
        if not words:
            return
        more = more_of(words)
        if more:
            delta, rest = more
            if self.find(rest[-1]) is not None and self.shift_count(rest[-1], delta):
                return
            words = [article_for(rest[0]), *rest] if delta == 1 else [count_word(delta), *rest]
        if words[-1] in PATTERN_NOUNS and len(words) <= 3 and "of" not in words:
            self.set_attribute(None, PATTERN_NOUNS[words[-1]])
            return
        if not words[-1][0].isalnum():
            return
        if self.find(words[-1]) is not None:  # there already: "long sleeves" makes them long
            for word in words[:-1]:
                if class_of(word) is not None:
                    self.set_attribute(words[-1], word)
            return
        self.tokens += [",", "with", *with_article(words), *tokenize(where)]

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
