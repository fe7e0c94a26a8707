"""The subtitle conventions every text track must follow, checked on the files as written
(parsed back with the srt and webvtt libraries, not with movieid's own code)."""
from __future__ import annotations

from pathlib import Path

MAX_LINES = 2
MAX_CHARS = 42


def read_cues(path: Path) -> list[tuple[float, float, str]]:
    """(start, end, text) of every cue of an SRT or WebVTT file."""
    if path.suffix == ".srt":
        import srt

        return [(c.start.total_seconds(), c.end.total_seconds(), c.content) for c in srt.parse(path.read_text())]
    import webvtt

    return [(vtt_seconds(c.start), vtt_seconds(c.end), c.text) for c in webvtt.read(str(path))]


def vtt_seconds(stamp: str) -> float:
    """'HH:MM:SS.mmm' (webvtt-py's start_in_seconds drops the milliseconds)."""
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def check_conventions(cues: list[tuple[float, float, str]], min_duration: float = 1.0) -> None:
    """Lines of at most MAX_CHARS, at most MAX_LINES a cue, no overlaps; a cue shorter than
    ``min_duration`` only where the track had no room for more: the next cue follows at once."""
    previous_end = 0.0
    for k, (start, end, text) in enumerate(cues):
        lines = text.split("\n")
        assert 1 <= len(lines) <= MAX_LINES, text
        assert all(0 < len(line) <= MAX_CHARS and line == line.strip() for line in lines), text
        assert end > start, (start, end, text)
        if end - start < min_duration - 1e-3:
            assert k + 1 < len(cues) and abs(cues[k + 1][0] - end) < 1e-3, (start, end, text)
        assert start >= previous_end - 1e-3, (previous_end, start, text)
        previous_end = end


def words_of(cues) -> list[str]:
    return " ".join(text.replace("\n", " ") for _, _, text in cues).split()


def check_word_boundaries(cues, texts: list[str]) -> None:
    """The cues hold exactly the words of ``texts`` in order; only a word longer than a line
    is ever cut, into line-long pieces."""
    got = words_of(cues)
    expected = " ".join(texts).split()
    i = 0
    for word in expected:
        if len(word) <= MAX_CHARS:
            assert got[i] == word, (got[i - 2:i + 3], word)
            i += 1
            continue
        joined = ""
        while joined != word:
            assert len(got[i]) <= MAX_CHARS and word.startswith(joined + got[i]), (got[i], word)
            joined += got[i]
            i += 1
    assert i == len(got)
