"""What kind of English word a word can be: a dictionary look-up, no model.

Backed by ``lemminflect``'s lemma tables (word -> the parts of speech it can
have, with their lemmas), which ship inside the package. The rule reasoner
uses them to tell a verb left over from an instruction ("has", "show",
"parked") from a noun, to read comparatives ("darker" -> "dark") and to
inflect nouns. Every function is pure and cached.
"""

from __future__ import annotations

from functools import lru_cache

import lemminflect

#: Verbs that only ever instruct ("make it red"): never part of a description.
INSTRUCTION_VERBS = frozenset(
    "make change replace swap substitute remove delete erase add show turn convert switch "
    "put place move keep retain include insert exclude focus zoom take".split()
)
#: Words that tie a replacement together and never belong in a description.
REPLACEMENT_WORDS = frozenset({"instead", "rather"})


@lru_cache(maxsize=65536)
def parts_of_speech(word: str) -> frozenset[str]:
    """The universal POS tags ``word`` can have ("has" -> {AUX, VERB}); empty when unknown."""
    return frozenset(lemminflect.getAllLemmas(word))


def is_known(word: str) -> bool:
    return bool(parts_of_speech(word))


def can_be_noun(word: str) -> bool:
    tags = parts_of_speech(word)
    return "NOUN" in tags or "PROPN" in tags or not tags


def is_verb_only(word: str) -> bool:
    """A verb or auxiliary that cannot be a noun or adjective ("has", "are", "parked")."""
    tags = parts_of_speech(word)
    return bool(tags) and tags <= {"VERB", "AUX"}


def is_function_word(word: str) -> bool:
    """Auxiliaries, determiners, pronouns, prepositions, conjunctions: no content."""
    tags = parts_of_speech(word)
    return bool(tags) and not tags & {"NOUN", "PROPN", "ADJ", "VERB", "NUM"}


def is_adjective(word: str) -> bool:
    return "ADJ" in parts_of_speech(word)


@lru_cache(maxsize=8192)
def comparative_base(word: str) -> str | None:
    """ "darker" -> "dark", "bigger" -> "big"; None when ``word`` is not a comparative."""
    if not word.endswith("er") or len(word) < 4:
        return None
    for lemma in lemminflect.getAllLemmas(word).get("ADJ", ()):
        if lemma != word and word in lemminflect.getAllInflections(lemma, "ADJ").get("JJR", ()):
            return str(lemma)
    return None


@lru_cache(maxsize=8192)
def plural_of(noun: str) -> str | None:
    """The regular dictionary plural of a known noun, else None."""
    forms = lemminflect.getInflection(noun, "NNS")
    return str(forms[0]) if forms else None


@lru_cache(maxsize=8192)
def singular_of(noun: str) -> str | None:
    """The dictionary singular of a known plural noun, else None."""
    lemmas = lemminflect.getAllLemmas(noun).get("NOUN", ())
    if not lemmas or noun in lemmas:
        return None
    return str(lemmas[0])
