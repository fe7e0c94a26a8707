"""Probing and frame access on real files made by ffmpeg, odd-but-valid ones included."""
from __future__ import annotations

import json
import struct
import subprocess

import numpy as np
import pytest

from movieid.errors import MovieIdError
from movieid.video import FrameReader, probe

from .conftest import lavfi_film, run_cli


def ffmpeg_frames(path, width, height) -> np.ndarray:
    """Every frame as ffmpeg itself decodes it (the reference for frame-exact access)."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-fps_mode", "passthrough",
                          "-s", f"{width}x{height}", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


@pytest.fixture(scope="module")
def cfr(films):
    return lavfi_film(films / "cfr.mp4", "-c:v", "libx264", "-g", "50", duration=4, size="320x240")


def test_probe_reads_size_rate_and_duration(cfr):
    film = probe(cfr)
    assert (film.width, film.height, film.rotation) == (320, 240, 0)
    assert film.frame_count == 100 and film.fps == pytest.approx(25.0)
    assert film.duration == pytest.approx(4.0, abs=1e-3)
    assert not film.vfr and film.reader == "decord" and film.codec == "h264"
    assert film.time(25) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("name, args", [
    ("mp4", ["-c:v", "libx264", "-g", "30", "-bf", "3"]),
    ("mkv", ["-c:v", "libx264", "-g", "30"]),
    ("ts", ["-c:v", "libx264", "-g", "30"]),            # decord seeks wrongly here: ffmpeg fallback
    ("mpg", ["-c:v", "mpeg2video", "-g", "12"]),
    ("webm", ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-g", "30"]),
    ("av1.mp4", ["-c:v", "libsvtav1", "-g", "30"]),     # decord's FFmpeg cannot decode AV1
])
def test_random_access_returns_the_exact_frames(films, name, args):
    path = lavfi_film(films / f"access.{name}", *args, "-pix_fmt", "yuv420p", duration=3)
    film = probe(path)
    reference = ffmpeg_frames(path, film.width, film.height)
    assert film.frame_count == len(reference) == 75
    wanted = [70, 3, 40, 41, 12, 74, 3]
    with FrameReader(film, size=(film.width, film.height)) as reader:
        frames = reader.read(wanted)
        streamed = [i for i, _ in reader.stream()]
    for index, frame in zip(wanted, frames):
        assert np.abs(frame.astype(int) - reference[index]).mean() < 1.0, (name, index)
    assert streamed == list(range(75))


def test_variable_frame_rate_keeps_each_frames_time(films):
    # 2 s at 25 fps, then frames every 0.1 s: times must follow the file, not frame/fps.
    path = lavfi_film(films / "vfr.mp4", "-vf", "setpts='if(lt(N,50),N/25,2+(N-50)/10)/TB'",
                      "-fps_mode", "vfr", "-c:v", "libx264", duration=4)
    film = probe(path)
    assert film.vfr
    deltas = np.diff(film.timestamps)
    assert deltas[:40].max() == pytest.approx(0.04, abs=2e-3)
    assert deltas[60:90].min() > 0.07
    assert film.duration > 6.0           # 100 frames, but far more than 4 s of film


def test_video_stream_starting_late_keeps_its_offset(films):
    video = lavfi_film(films / "plain.mp4", "-c:v", "libx264", duration=2)
    audio = films / "tone.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=duration=4", "-c:a", "aac",
                    str(audio)], check=True)
    late = films / "late.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-itsoffset", "1.5", "-i", str(video), "-i", str(audio),
                    "-map", "0:v", "-map", "1:a", "-c", "copy", str(late)], check=True)
    film = probe(late)
    assert film.start_offset == pytest.approx(1.5, abs=0.01)
    assert film.time(0) == pytest.approx(1.5, abs=0.01)
    assert film.time(25) == pytest.approx(2.5, abs=0.01)


def test_rotation_metadata_is_honoured(films):
    plain = lavfi_film(films / "landscape.mp4", "-c:v", "libx264", duration=1, size="320x240")
    rotated = films / "rotated.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(plain), "-c", "copy",
                    "-metadata:s:v:0", "rotate=90", str(rotated)], check=True)
    film = probe(rotated)
    assert (film.width, film.height) == (240, 320) and film.rotation in (90, 270)
    upright = ffmpeg_frames(rotated, 240, 320)   # ffmpeg rotates for display too
    with FrameReader(film, size=(240, 320)) as reader:
        frame = reader.read([10])[0]
    assert frame.shape == (320, 240, 3)
    assert np.abs(frame.astype(int) - upright[10]).mean() < 1.0


def test_non_square_pixels_give_display_size(films):
    path = lavfi_film(films / "anamorphic.mp4", "-vf", "setsar=16/11", "-c:v", "libx264",
                      duration=1, size="352x288")
    film = probe(path)
    assert (film.width, film.height) == (512, 288)
    with FrameReader(film, max_side=256) as reader:
        assert reader.read([0])[0].shape == (144, 256, 3)


def test_odd_dimensions_and_a_single_frame(films):
    path = lavfi_film(films / "odd.mp4", "-frames:v", "1", "-c:v", "libx264", "-pix_fmt", "yuv444p",
                      duration=1, size="321x199", source="testsrc")  # testsrc2 rounds sizes to even
    film = probe(path)
    assert film.frame_count == 1 and (film.width, film.height) == (321, 199)
    with FrameReader(film, max_side=160) as reader:
        assert reader.read([0])[0].shape[2] == 3


def test_a_raw_stream_without_timestamps_plays_at_its_nominal_rate(films):
    # an H.264 elementary stream carries no timestamps at all: ffprobe gives each frame N/A
    path = lavfi_film(films / "raw.h264", "-c:v", "libx264", "-bf", "3", "-r", "30", duration=2, size="160x120")
    film = probe(path)
    assert film.frame_count == 60 and film.reader == "ffmpeg"
    assert film.timestamps[0] == 0.0 and np.allclose(np.diff(film.timestamps), 1 / 30, atol=1e-4)
    assert not film.vfr and abs(film.duration - 2.0) < 1e-3
    with FrameReader(film, max_side=160) as reader:
        assert len(reader.read([0, 59])) == 2


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("make, problem", [
    (lambda d: d / "missing.mp4", "no such video file"),
    (lambda d: d, "is a directory"),
    (lambda d: _write(d / "empty.mp4", b""), "empty (0 bytes)"),
    (lambda d: _write(d / "notes.mp4", b"just text\n"), "not a video file FFmpeg can read"),
])
def test_unusable_files_give_one_line_errors(tmp_path, make, problem):
    path = make(tmp_path)
    with pytest.raises(MovieIdError) as err:
        probe(path)
    assert problem in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_audio_only_and_still_images_are_refused(films, tmp_path):
    audio = films / "tone_only.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=duration=1", str(audio)], check=True)
    with pytest.raises(MovieIdError, match="has no video stream"):
        probe(audio)
    from PIL import Image

    still = tmp_path / "still.png"
    Image.new("RGB", (64, 48), "red").save(still)
    with pytest.raises(MovieIdError, match="still image"):
        probe(still)


def test_truncated_file_is_refused(films, tmp_path):
    full = lavfi_film(films / "full.mp4", "-c:v", "libx264", "-movflags", "+faststart", duration=8,
                      size="640x360")
    cut = tmp_path / "cut.mp4"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MovieIdError, match="corrupt or truncated"):
        film = probe(cut)
        with FrameReader(film, max_side=128) as reader:
            for _ in reader.stream():
                pass


def test_frames_hidden_by_an_edit_list_are_not_counted(films):
    # Cutting with -c copy at 1.3 s keeps the GOP's earlier frames in the file but hides
    # them with an edit list: players start at the cut, and so must frame 0.
    source = lavfi_film(films / "long_gop.mp4", "-c:v", "libx264", "-g", "100", duration=6)
    cut = films / "editlist.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", "1.3", "-i", str(source), "-c", "copy", str(cut)],
                   check=True)
    film = probe(cut)
    reference = ffmpeg_frames(cut, film.width, film.height)
    assert film.frame_count == len(reference) and film.time(0) == pytest.approx(0.0, abs=1e-3)
    with FrameReader(film, size=(film.width, film.height)) as reader:
        frames = reader.read([0, 10, film.frame_count - 1])
        assert sum(1 for _ in reader.stream()) == film.frame_count
    for frame, index in zip(frames, [0, 10, film.frame_count - 1]):
        assert np.abs(frame.astype(int) - reference[index]).mean() < 1.0


@pytest.mark.parametrize("name", ["cache:film.mp4", "-film.mp4", "subfile,,start,0,end,10,,:film.mp4"])
def test_a_name_ffmpeg_would_read_as_a_protocol_or_an_option_is_that_file(tmp_path, monkeypatch, name):
    """``cache:film.mp4`` names a file of its own, not film.mp4 through FFmpeg's cache protocol."""
    lavfi_film(tmp_path / "film.mp4", duration=2.0)
    odd = tmp_path / name
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "color=c=red:size=160x120:rate=25:d=0.6",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", f"file:{odd}"], check=True)
    monkeypatch.chdir(tmp_path)
    film = probe(name)
    assert film.frame_count == 15 and (film.width, film.height) == (160, 120)
    assert film.size_bytes == odd.stat().st_size
    with FrameReader(film) as reader:
        assert reader.read([14])[0].mean(axis=(0, 1))[0] > 200      # red, not the test pattern


@pytest.mark.parametrize("container", ["mkv", "webm"])
def test_matroska_with_a_longer_audio_track_or_a_late_video_is_complete(films, tmp_path, container):
    """Matroska has no stream durations, only the container's (the longest stream's end) and a
    DURATION tag per stream: neither a longer audio track nor a late video is a truncation."""
    video = lavfi_film(films / "four_s.mp4", "-c:v", "libx264", duration=4, size="160x120")
    codec = ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-c:a", "libopus"] if container == "webm" else \
        ["-c:v", "copy", "-c:a", "libvorbis"]
    long_audio, late = tmp_path / f"long_audio.{container}", tmp_path / f"late.{container}"
    ffmpeg = ["ffmpeg", "-nostdin", "-v", "error", "-y"]
    subprocess.run([*ffmpeg, "-i", str(video), "-f", "lavfi", "-i", "sine=d=7", "-map", "0:v", "-map", "1:a",
                    *codec, str(long_audio)], check=True)
    subprocess.run([*ffmpeg, "-f", "lavfi", "-i", "sine=d=7", "-itsoffset", "2", "-i", str(video), "-map", "0:a",
                    "-map", "1:v", *codec, str(late)], check=True)
    assert probe(long_audio).frame_count == 100
    film = probe(late)
    assert film.frame_count == 100 and abs(film.start_offset - 2.0) < 0.05
    cut = tmp_path / f"cut.{container}"
    cut.write_bytes(long_audio.read_bytes()[: long_audio.stat().st_size // 2])
    with pytest.raises(MovieIdError, match="corrupt or truncated|cannot|not a video"):
        film = probe(cut)
        with FrameReader(film, max_side=64) as reader:
            for _ in reader.stream():
                pass


def test_joined_mpeg_ts_recordings_play_on_one_timeline(films, tmp_path):
    """``cat a.ts b.ts c.ts``: b's timestamps restart, c's jump a minute ahead. Times carry on
    across both as FFmpeg's own remux has them (and the header's 61 s is no truncation)."""
    parts = [lavfi_film(films / "part1.ts", "-c:v", "libx264", "-preset", "ultrafast", duration=2.0),
             lavfi_film(films / "part2.ts", "-c:v", "libx264", "-preset", "ultrafast", duration=2.0,
                        source="smptebars"),
             lavfi_film(films / "part3.ts", "-vf", "negate", "-c:v", "libx264", "-preset", "ultrafast",
                        "-output_ts_offset", "60", duration=1.0)]
    joined = tmp_path / "joined.ts"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    remuxed = tmp_path / "remuxed.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(joined), "-c", "copy", str(remuxed)], check=True)
    film, reference = probe(joined), probe(remuxed)
    assert film.frame_count == reference.frame_count == 125
    assert np.all(np.diff(film.timestamps) > 0) and not film.vfr and film.fps == pytest.approx(25.0)
    assert np.allclose(film.timestamps, reference.timestamps, atol=1e-3)
    assert film.duration == pytest.approx(5.0, abs=1e-3)

    ours, remux = ([t for s in json.loads(run_cli("shots", path, "--json", "-q").stdout)["shots"]
                    for t in (s["start"], s["end"])] for path in (joined, remuxed))
    assert ours == pytest.approx([0.0, 2.0, 2.0, 4.0, 4.0, 5.0], abs=1e-3)     # start, end of each shot
    assert ours == pytest.approx(remux, abs=1e-3)


def test_frame_times_going_backwards_where_the_container_does_not_allow_it_are_refused(tmp_path):
    """IVF keeps each frame's time in a 12-byte header before it: from frame 25 on, 0.8 s earlier."""
    path = lavfi_film(tmp_path / "back.ivf", "-c:v", "libvpx", "-b:v", "200k", duration=2.0)
    data = bytearray(path.read_bytes())
    position, index = 32, 0
    while position < len(data):
        size, pts = struct.unpack_from("<IQ", data, position)
        if index >= 25:
            struct.pack_into("<Q", data, position + 4, pts - 20)     # 1/25 s units
        position, index = position + 12 + size, index + 1
    path.write_bytes(data)
    with pytest.raises(MovieIdError) as err:
        probe(path)
    assert str(err.value) == (f"{path}: frame timestamps do not advance: frame 25 is at 0.200 s, not after frame 24 "
                              f"(0.960 s); re-time the frames first, e.g. ffmpeg -i {path} -vf setpts=N/FRAME_RATE/TB "
                              f"{tmp_path / 'back.retimed.mkv'}")
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-vf", "setpts=N/FRAME_RATE/TB",
                    str(tmp_path / "back.retimed.mkv")], check=True)
    assert probe(tmp_path / "back.retimed.mkv").duration == pytest.approx(2.0, abs=1e-3)   # the advice works
