"""Shot detection on a real multi-shot film with cuts at known frames."""
from __future__ import annotations

import pytest

from movieid.config import ShotConfig
from movieid.keyframes import FrameStats
from movieid.scan import scan_film
from movieid.video import probe

from .conftest import CARDGAME_MAX_SHOT_LEN
from .helpers.processes import descendants, wait_gone


def detect_shots(film, config, stats=None):
    return [s.shot for s in scan_film(film, config, frames_per_shot=3, stats=stats)]


@pytest.mark.parametrize("detector", ["adaptive", "content"])
def test_every_cut_is_found_on_its_frame(cardgame, detector):
    path, spec, _ = cardgame
    film = probe(path)
    shots = detect_shots(film, ShotConfig(detector=detector, max_shot_len=0))
    assert [s.start_frame for s in shots] == spec.cut_frames()
    assert shots[-1].end_frame == film.frame_count == sum(s.frames for s in spec.shots)
    flash = shots[3]
    assert flash.frame_count == 3            # a 3-frame flash cut is still a shot


def test_shots_tile_the_film_and_carry_presentation_times(cardgame):
    path, _, _ = cardgame
    film = probe(path)
    shots = detect_shots(film, ShotConfig())
    for a, b in zip(shots, shots[1:]):
        assert a.end_frame == b.start_frame and a.end == pytest.approx(b.start)
    assert shots[0].start == 0.0
    assert shots[-1].end == pytest.approx(film.duration, abs=1e-3)
    assert shots[5].start == pytest.approx(shots[5].start_frame / 25, abs=1e-4)


def test_long_shots_are_split_into_equal_parts(cardgame):
    path, spec, expected = cardgame
    film = probe(path)
    shots = detect_shots(film, ShotConfig(max_shot_len=CARDGAME_MAX_SHOT_LEN))
    assert len(shots) == len(expected)
    last, before = shots[-1], shots[-2]
    assert (before.part, before.parts, last.part, last.parts) == (1, 2, 2, 2)
    assert before.cut == last.cut == len(spec.shots) - 1
    assert before.duration == pytest.approx(last.duration, abs=0.05)
    assert all(s.duration <= CARDGAME_MAX_SHOT_LEN + 1e-6 for s in shots)
    assert [s.index for s in shots] == list(range(len(shots)))


def test_min_shot_len_merges_flash_cuts(cardgame):
    path, spec, _ = cardgame
    film = probe(path)
    shots = detect_shots(film, ShotConfig(min_shot_len=0.5, max_shot_len=0))
    assert len(shots) < len(spec.shots)
    assert all(s.frame_count >= 12 for s in shots[:-1])


def test_frame_stats_cover_every_frame(cardgame):
    path, _, _ = cardgame
    film = probe(path)
    stats = FrameStats(film.frame_count)
    detect_shots(film, ShotConfig(), stats)
    assert (stats.sharpness > 0).all() and (stats.brightness > 0).all()


def test_frames_read_again_are_the_frames_the_decoding_pass_kept(cardgame):
    """A caption engine sees what the face analysis saw, whether the decoding pass hands it the
    frames or they are read again later (a batch): grid frames equal to the byte, in any order
    (asked for an earlier one, the pass restarts), and the flash cut's keyframes (off the grid)
    as the face workers read them."""
    import os

    import numpy as np

    from movieid.scan import KeptFrames, keyframe_step
    from movieid.video import FrameReader, fit_size

    path, _, _ = cardgame
    film = probe(path)
    size = fit_size(film.width, film.height, 320)      # scaled, as a film larger than faces.size is
    scanned = list(scan_film(film, ShotConfig(max_shot_len=CARDGAME_MAX_SHOT_LEN), 3, size))
    kept = {i: frame for s in scanned for i, frame in s.frames.items()}
    order = sorted(kept)
    assert len(order) > 8 and all(frame.planes.shape == (size[1] * 3 // 2, size[0]) for frame in kept.values())
    before = descendants(os.getpid())
    source = KeptFrames(film, size)
    try:
        late, early = order[len(order) // 2:], order[:len(order) // 2]
        again = {**source.read(late), **source.read(early[:3]), **source.read(early[3:])}
        assert sorted(again) == order
        assert all(np.array_equal(again[i].planes, kept[i].planes) for i in order)
        step = keyframe_step(film)
        off_grid = sorted({i for s in scanned for seg in s.candidates for i in seg if i % step})
        assert off_grid                                   # the 3-frame flash cut
        read = source.read(off_grid)
        expected = FrameReader(film, size=size).read(off_grid)
        assert all(np.array_equal(read[i], e) for i, e in zip(off_grid, expected))
        started = descendants(os.getpid()) - before           # the pass's ffmpeg
    finally:
        source.close()
    assert started and not wait_gone(started)             # ... and it is gone
