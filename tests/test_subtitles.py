"""Subtitle conventions for every text track: at most 2 lines of at most 42 characters,
broken at word boundaries, at least the minimum duration on screen, no overlaps."""
from __future__ import annotations

import copy

import pytest

from movieid.subtitles import TrackStyle, layout, render_srt, render_vtt, split_text
from movieid.writers import check_outputs, output_paths, write_outputs

from .subtitle_rules import check_conventions, check_word_boundaries, read_cues, vtt_seconds, words_of

# Captions of the kind IDA-VLM writes: one or two sentences, often longer than a subtitle.
LONG_CAPTIONS = [
    "Ross and Chandler sit at a card table; Ross laughs at something Chandler says while Joey watches "
    "from the doorway, holding a slice of pizza.",
    "Rachel looks up from her cards. Monica leans across the table and whispers to her, and both of them "
    "burst out laughing.",
    "Antidisestablishmentarianistically-minded-characters argue.",
]


def test_breaks_at_word_boundaries_within_two_lines_of_42():
    text = LONG_CAPTIONS[0]
    chunks = split_text(text)
    assert len(chunks) > 1
    for chunk in chunks:
        lines = chunk.split("\n")
        assert len(lines) <= 2 and all(len(line) <= 42 for line in lines)
    check_word_boundaries([(0, 1, c) for c in chunks], [text])
    # two lines are balanced: neither is more than a word longer than needed
    first, second = split_text("Rachel, Ross, Chandler and Joey (left to right) are at the table")[0].split("\n")
    assert abs(len(first) - len(second)) <= 12


def test_short_text_is_one_line_and_a_word_longer_than_a_line_is_cut():
    assert split_text("Rachel") == ["Rachel"]
    chunks = split_text(LONG_CAPTIONS[2])
    assert chunks == ["Antidisestablishmentarianistically-minded-\ncharacters argue."]
    check_word_boundaries([(0, 1, c) for c in chunks], [LONG_CAPTIONS[2]])


def test_minimum_duration_moves_later_cues_instead_of_overlapping():
    cues = layout([(0.0, 0.12, "A flash cut", "a"), (0.12, 3.0, "The next shot", "b"), (3.0, 3.4, "Short", "c"),
                   (3.4, 10.0, "Last", "d")], TrackStyle(min_duration=1.0))
    assert [(c.start, c.end) for c in cues] == [(0.0, 1.0), (1.0, 3.0), (3.0, 4.0), (4.0, 10.0)]
    longer = layout([(0.0, 0.5, "x", None), (0.5, 5.0, "y", None)], TrackStyle(min_duration=2.0))
    assert [(c.start, c.end) for c in longer] == [(0.0, 2.0), (2.0, 5.0)]


def test_a_run_of_flash_cuts_keeps_the_track_on_its_shots():
    """Twenty 0.2 s shots (a montage): each cue holds its own shot, not a second that pushes every
    later cue further; the same caption on neighbouring shots is one cue; nothing runs past the
    film's end."""
    flashes = [(0.2 * k, 0.2 * (k + 1), "Ross" if k % 2 else "Rachel", f"shot-{k}") for k in range(20)]
    cues = layout(flashes, TrackStyle(min_duration=1.0), until=4.0)
    assert [(c.start, c.end) for c in cues] == [(round(a, 3), round(b, 3)) for a, b, _, _ in flashes]
    same = layout([(0.2 * k, 0.2 * (k + 1), "No one on screen", f"shot-{k}") for k in range(20)], until=4.0)
    assert [(c.start, c.end, c.identifier) for c in same] == [(0.0, 4.0, "shot-0")]
    last = layout([(0.0, 3.0, "A long shot", None), (3.0, 3.3, "A flash at the very end", None)], until=3.3)
    assert last[-1].end == 3.3


def test_a_long_caption_shares_its_shot_in_consecutive_cues():
    cues = layout([(10.0, 16.0, LONG_CAPTIONS[1], "shot-4")])
    assert len(cues) == 2 and cues[0].start == 10.0 and cues[-1].end == pytest.approx(16.0)
    assert cues[0].end == cues[1].start
    assert [c.identifier for c in cues] == ["shot-4", "shot-4-2"]


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_tracks_of_a_real_annotation_follow_the_conventions(sample_doc, tmp_path, fmt):
    """The sample film has a 0.12 s flash cut and captions longer than a line; with long
    VLM-style captions swapped in, every cue still follows the rules."""
    doc = copy.deepcopy(sample_doc)
    for i, shot in enumerate(doc["shots"]):
        if i % 2:
            shot["caption"] = LONG_CAPTIONS[i % 3]
    for style in (TrackStyle(), TrackStyle(min_duration=1.5)):
        paths = output_paths(tmp_path, f"film-{style.min_duration}", [fmt])
        check_outputs(paths, overwrite=False)
        write_outputs(doc, paths, False, style)
        cues = read_cues(paths[fmt])
        check_conventions(cues, style.min_duration)
        check_word_boundaries(cues, [s["caption"] for s in doc["shots"]])
        flash = next(s for s in doc["shots"] if s["end"] - s["start"] < 0.5)
        first = next(k for k, (start, _, _) in enumerate(cues) if start >= flash["start"] - 1e-3)
        assert cues[first][0] == pytest.approx(flash["start"], abs=1e-3)        # its cues start with it ...
        words, last = flash["caption"].split(), first
        while words_of(cues[first:last + 1]) != words:
            last += 1
        after = doc["shots"][flash["index"] + 1]        # ... and are held as long as the next shot leaves room
        assert cues[last][1] >= min(flash["start"] + style.min_duration, after["end"] - style.min_duration) - 1e-3
        assert cues[last][1] > flash["end"]
        assert cues[-1][1] <= doc["film"]["duration"] + 1e-3


def test_renderers_agree_with_each_other(sample_doc):
    import srt
    import webvtt

    srt_cues = list(srt.parse(render_srt(sample_doc)))
    vtt_cues = webvtt.from_string(render_vtt(sample_doc)).captions
    assert len(srt_cues) == len(vtt_cues) >= len(sample_doc["shots"])
    for a, b in zip(srt_cues, vtt_cues):
        assert a.content == b.text
        assert a.start.total_seconds() == pytest.approx(vtt_seconds(b.start), abs=1e-3)
