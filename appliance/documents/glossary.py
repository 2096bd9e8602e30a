"""The glossary: what a question says, in the words the documents use.

Korean administrative text says 체력단련장 where staff say 헬스장, and an
English question over it shares no word with it at all. Retrieval therefore
reads a question against the appliance's glossary (glossary.tsv beside this
module; its header gives the format): each line is one concept with the
Korean terms documents use for it and the aliases a question may use
(English words and phrases, Korean spoken forms). The matched concepts'
Korean terms join the question's keywords and its embedding, and what the
question asks about counts as mentioned by the documents when they hold any
of the Korean words for it (retrieve.py: a question about what none of them
mentions is declined).

English is matched by whole words, lowercased, with a plural's -s or -es
taken off, the longest phrase first (so "pass rate" is not "pass"). A Korean
alias of two characters or more is matched in the question's text; a
one-syllable one (밥, 쉬) only as one of the question's morphemes.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")
_ENGLISH = re.compile(r"[a-z]")
_MAX_LINE = 4000  # characters of one glossary line
# English words that name nothing a passage is about, as a question puts them.
STOP_WORDS = frozenset(
    " ".join(
        (
            "a an the is are was were be been am of for to in on at by with from as about into",
            "what which who whom whose how when where why do does did done and or not no it its",
            "this that these those there i we you he she they my our your me us can could should",
            "would will shall may might must much many any some please tell show give have has",
            "had get got if than then so out up down under over after before while each every",
            "per one two three four five six seven eight nine ten first second third long",
            "need needed allowed let kind sort way ok okay also just still only",
        )
    ).split()
)


@dataclass(frozen=True)
class Concept:
    korean: tuple[str, ...]  # the documents' words for it, alternatives


@dataclass(frozen=True)
class Glossary:
    concepts: tuple[Concept, ...]
    english: dict[tuple[str, ...], tuple[int, ...]]  # stemmed phrase -> concepts
    longest: int  # words in the longest English phrase
    korean: dict[str, tuple[int, ...]]  # alias of 2+ characters -> concepts
    syllables: dict[str, tuple[int, ...]]  # one-syllable alias -> concepts

    def read(self, question: str, morphemes: Iterable[str] = ()) -> Reading:
        """The concepts `question` names (each once, in the order first found), and its
        English words that name none."""
        text = unicodedata.normalize("NFKC", question).lower()
        found: dict[int, list[str]] = {}
        said = _WORD.findall(text)
        words = [stem(word) for word in said]
        unknown: list[str] = []
        at = 0
        while at < len(words):
            for length in range(min(self.longest, len(words) - at), 0, -1):
                phrase = tuple(words[at : at + length])
                for hit in self.english.get(phrase, ()):
                    found.setdefault(hit, []).append(" ".join(phrase))
                if phrase in self.english:
                    at += length
                    break
            else:
                if not ({said[at], words[at]} & STOP_WORDS or said[at].isdigit()):
                    unknown.append(words[at])
                at += 1
        for alias, hits in self.korean.items():
            if alias in text:
                for hit in hits:
                    found.setdefault(hit, []).append(alias)
        for morpheme in morphemes:
            for hit in self.syllables.get(morpheme, ()):
                found.setdefault(hit, []).append(morpheme)
        return Reading(
            [Named(self.concepts[index], tuple(aliases)) for index, aliases in found.items()],
            unknown,
        )


@dataclass(frozen=True)
class Named:
    """A concept a question names, and the aliases it named it by."""

    concept: Concept
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class Reading:
    named: list[Named]
    unknown: list[str]  # the question's English content words no concept has

    @property
    def korean(self) -> str:
        """The named concepts' Korean terms, as one text."""
        return " ".join(dict.fromkeys(t for n in self.named for t in n.concept.korean))


def stem(word: str) -> str:
    """An English word less a plural ending: leaves -> leave, boxes -> box, policies ->
    policy; words of three letters or fewer (gas, ids) and -ss, -us, -is are left alone."""
    word = word.removesuffix("'s")
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith(("ches", "shes", "sses", "xes", "zes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def parse(text: str) -> Glossary:
    """A glossary from its text; a malformed line is a ValueError naming it."""
    concepts: list[Concept] = []
    english: dict[tuple[str, ...], list[int]] = {}
    korean: dict[str, list[int]] = {}
    syllables: dict[str, list[int]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 2 or len(line) > _MAX_LINE:
            raise ValueError(f"glossary line {number} is not KOREAN TERMS<TAB>ALIASES")
        terms = tuple(t.strip() for t in unicodedata.normalize("NFKC", fields[0]).split("/"))
        aliases = [a.strip() for a in unicodedata.normalize("NFKC", fields[1]).lower().split(",")]
        if not all(terms) or not all(aliases):
            raise ValueError(f"glossary line {number} has an empty term or alias")
        index = len(concepts)
        concepts.append(Concept(terms))
        # A document's own word in a question names its concept too (법인카드 -> 정부구매카드).
        for alias in (*aliases, *(t.lower() for t in terms if len(t) >= 2)):
            if _ENGLISH.search(alias):
                phrase = tuple(stem(word) for word in _WORD.findall(alias))
                english.setdefault(phrase, []).append(index)
            elif len(alias) >= 2:
                korean.setdefault(alias, []).append(index)
            else:
                syllables.setdefault(alias, []).append(index)
    return Glossary(
        concepts=tuple(concepts),
        english={phrase: tuple(dict.fromkeys(hit)) for phrase, hit in english.items()},
        longest=max((len(phrase) for phrase in english), default=1),
        korean={alias: tuple(dict.fromkeys(hit)) for alias, hit in korean.items()},
        syllables={alias: tuple(dict.fromkeys(hit)) for alias, hit in syllables.items()},
    )


@functools.cache
def shipped() -> Glossary:
    """The appliance's glossary (read once)."""
    source = resources.files("appliance.documents").joinpath("glossary.tsv")
    return parse(source.read_text("utf-8"))
