"""The offline engine's captions: plain English, only cast names and Unknown labels."""
from __future__ import annotations

import numpy as np

from movieid.engines.faces import NOBODY, describe
from movieid.records import Appearance, Box, Face, Track


def person(name=None, label=None, x=100.0, frames=(0,)):
    track = Track(tuple(Face(f, f / 25, Box(x, 10, x + 50, 60), 1.0, np.ones(4) / 2) for f in frames))
    return Appearance(track, name, label, 0.95, (0.95,), np.zeros(0))


def test_two_cast_members_with_positions():
    c = describe([person("Joe Biden", x=700), person("Barack Obama", x=100)])
    assert c.text == "Barack Obama (left) and Joe Biden (right)"
    assert c.names == ("Barack Obama", "Joe Biden")


def test_cast_members_seen_one_after_another_get_no_positions():
    # a dissolve: Obama in the first frames, Biden (a little to his left) in the last
    c = describe([person("Joe Biden", x=90, frames=(40,)), person("Barack Obama", x=100, frames=(10, 20))])
    assert c.text == "Barack Obama and Joe Biden"
    assert c.names == ("Barack Obama", "Joe Biden")
    # two seen together, a third later: positions would claim more than was seen
    c = describe([person("A", x=0, frames=(0, 10)), person("B", x=400, frames=(10,)), person("C", x=200, frames=(30,))])
    assert c.text == "A, B and C"


def test_cast_member_with_unknown_people():
    c = describe([person("Rose Leslie", x=300), person(label="Unknown 1", x=10)])
    assert c.text == "Rose Leslie with one unknown person (Unknown 1)"
    c = describe([person("Rose Leslie"), person(label="Unknown 1"), person(label="Unknown 4", x=900)])
    assert c.text == "Rose Leslie with two unknown people (Unknown 1, Unknown 4)"


def test_three_cast_members_and_only_unknowns_and_nobody():
    c = describe([person("A", x=0), person("B", x=400), person("C", x=800)])
    assert c.text == "A, B and C (left to right)"
    assert describe([person(label="Unknown 2")]).text == "One unknown person (Unknown 2) on screen"
    assert describe([]).text == NOBODY and describe([]).names == ()
