"""The offline caption engine: who is on screen and where, in plain English.

"Barack Obama (left) and Joe Biden (right)", "Rose Leslie with one unknown person
(Unknown 1)", "No one recognisable on screen." Only cast names and Unknown labels are
ever used. Cast members who share the screen are named left to right; when they are seen one
after another instead (a dissolve, one leaving as another enters), in order of appearance and
with no position, since where one stood says nothing about the other.
"""
from __future__ import annotations

from itertools import combinations
from typing import Sequence

from ..records import Appearance, Caption, ShotPeople
from .base import Engine

NUMBER_WORDS = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
NOBODY = "No one recognisable on screen."


def _count(n: int) -> str:
    return NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _frames(people: Sequence[Appearance], name: str) -> set[int]:
    return set().union(*(p.track.frames for p in people if p.name == name))


def describe(people: Sequence[Appearance]) -> Caption:
    ordered = sorted(people, key=lambda p: p.track.center_x)
    named = list(dict.fromkeys(p.name for p in ordered if p.name))
    unknown = list(dict.fromkeys(p.display_name for p in ordered if not p.name))
    if not named and not unknown:
        return Caption(NOBODY, ())
    together = all(_frames(people, a) & _frames(people, b) for a, b in combinations(named, 2))
    if named:
        if not together:
            named.sort(key=lambda name: min(_frames(people, name)))
            text = _join(named)
        elif len(named) == 2:
            text = f"{named[0]} (left) and {named[1]} (right)"
        else:
            text = _join(named) + (" (left to right)" if len(named) > 2 else "")
        if unknown:
            noun = "person" if len(unknown) == 1 else "people"
            text += f" with {_count(len(unknown))} unknown {noun} ({', '.join(unknown)})"
    else:
        noun = "person" if len(unknown) == 1 else "people"
        text = f"{_count(len(unknown)).capitalize()} unknown {noun} ({', '.join(unknown)}) on screen"
    return Caption(text, tuple(named + unknown))


class FacesEngine(Engine):
    name = "faces"

    def finish(self, answer: str, people: ShotPeople) -> Caption:
        return describe(people.people)

    def settings(self) -> dict:
        return {"name": self.name}
