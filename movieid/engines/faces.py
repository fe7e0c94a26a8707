"""The offline caption engine: who is on screen and where, in plain English.

"Barack Obama (left) and Joe Biden (right)", "Rose Leslie with one unknown person
(Unknown 1)", "No one recognisable on screen." Only cast names and Unknown labels are
ever used. Where several cast members share the screen they are named left to right.
"""
from __future__ import annotations

from typing import Sequence

from ..records import Appearance, Caption, ShotPeople
from .base import Engine

NUMBER_WORDS = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
NOBODY = "No one recognisable on screen."


def _count(n: int) -> str:
    return NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def describe(people: Sequence[Appearance]) -> Caption:
    ordered = sorted(people, key=lambda p: p.track.center_x)
    named = list(dict.fromkeys(p.name for p in ordered if p.name))
    unknown = list(dict.fromkeys(p.display_name for p in ordered if not p.name))
    if not named and not unknown:
        return Caption(NOBODY, ())
    if named:
        if len(named) == 2:
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
