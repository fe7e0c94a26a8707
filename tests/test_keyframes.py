"""Keyframe choice: spread over the shot, sharp, and showing faces when some frames do."""
from __future__ import annotations

import numpy as np

from movieid import keyframes
from movieid.keyframes import FrameStats
from movieid.records import Shot


def _stats(n, sharp=None, bright=128.0):
    stats = FrameStats(n)
    stats.sharpness[:] = 10.0 if sharp is None else sharp
    stats.brightness[:] = bright
    return stats


def test_candidates_spread_over_the_shot_and_pick_the_sharpest():
    sharp = np.full(100, 10.0)
    sharp[[20, 55, 90]] = 50.0          # one sharp frame in each third
    shot = Shot(0, 0, 100, 0.0, 4.0, 0)
    segs = keyframes.candidates(shot, _stats(100, sharp), 3)
    assert [s[0] for s in segs] == [20, 55, 90]
    for seg in segs:
        assert len(seg) == 2 and abs(seg[1] - seg[0]) >= 10


def test_black_frames_are_avoided():
    bright = np.full(60, 120.0)
    bright[10:50] = 2.0                 # a fade to black in the middle
    sharp = np.full(60, 5.0)
    sharp[30] = 99.0                    # noise in the black part looks "sharp"
    stats = FrameStats(60)
    stats.sharpness[:], stats.brightness[:] = sharp, bright
    segs = keyframes.candidates(Shot(0, 0, 60, 0.0, 2.4, 0), stats, 1)
    assert not 10 <= segs[0][0] < 50


def test_short_shots_give_fewer_keyframes():
    segs = keyframes.candidates(Shot(0, 10, 12, 0.4, 0.48, 0), _stats(20), 3)
    assert sorted(s[0] for s in segs) == [10, 11]


def test_choose_prefers_a_candidate_that_shows_faces():
    faces = {5: [], 15: ["face"], 30: ["face"], 45: []}
    chosen = keyframes.choose([[5, 15], [30, 45]], lambda f: faces[f], lambda face: 1.0)
    assert chosen == [15, 30]
    # with nobody anywhere the sharpest candidates stay
    assert keyframes.choose([[5, 45]], lambda f: [], lambda face: 1.0) == [5]


def test_a_shots_samples_spread_over_it_away_from_the_candidates():
    from movieid.scan import SAMPLES_PER_SHOT, samples

    kept = list(range(100, 350, 5))              # the pass's grid frames of a 10 s shot at 25 fps
    candidates = {140, 215, 300}
    picked = samples(kept, candidates, gap=10)
    assert 4 <= len(picked) <= SAMPLES_PER_SHOT and picked == sorted(picked)
    assert set(picked) <= set(kept)
    every = sorted(candidates | set(picked))
    assert min(b - a for a, b in zip(every, every[1:])) >= 10
    assert picked[0] < 140 and picked[-1] > 300           # the ends of the shot are sampled too
    assert samples([], candidates, gap=10) == [] and samples(kept[:2], {100, 105}, gap=10) == []
