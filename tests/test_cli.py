"""The command line, run for real in a subprocess: outputs, exit codes and bad input.

Every bad input must give one line on stderr naming the file and the problem, a non-zero
exit code, no traceback, and no output files.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from .conftest import REPO, lavfi_film, pair_photo, run_cli


@pytest.fixture(scope="module")
def short_film(cardgame, films):
    """The first three shots of the card-game film (fast to annotate)."""
    path, _, _ = cardgame
    out = films / "short.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(path), "-frames:v", "130", "-c", "copy", str(out)],
                   check=True)
    return out


def env_with_cache(tmp_path):
    return {**os.environ, "MOVIEID_CACHE_DIR": str(tmp_path / "cache")}


def assert_one_line_error(proc, *needles, code=1):
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])


def test_annotate_writes_three_files_and_refuses_to_overwrite(short_film, package_cast, tmp_path):
    cast_dir = package_cast
    out = tmp_path / "out"
    proc = run_cli("annotate", short_film, "--cast", cast_dir, "-o", out, "--face-backend", "dlib",
                   env=env_with_cache(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["short.json", "short.srt", "short.vtt"]
    doc = json.loads((out / "short.json").read_text())
    assert [s["names"] for s in doc["shots"]] == [["Rachel"], ["Ross", "Chandler"], ["Eileen Collins"]]
    assert "Ross (left) and Chandler (right)" in (out / "short.srt").read_text()
    assert "cast on screen: Chandler, Eileen Collins, Rachel, Ross" in proc.stdout

    again = run_cli("annotate", short_film, "--cast", cast_dir, "-o", out, env=env_with_cache(tmp_path))
    assert_one_line_error(again, out / "short.srt", "--overwrite")
    forced = run_cli("annotate", short_film, "--cast", cast_dir, "-o", out, "--overwrite", "--quiet",
                     "--format", "srt", env=env_with_cache(tmp_path))
    assert forced.returncode == 0 and forced.stdout == "" and forced.stderr == ""


def test_shots_command_table_and_json(short_film):
    table = run_cli("shots", short_film, "-q")
    assert table.returncode == 0
    assert len(table.stdout.strip().splitlines()) == 4          # header + 3 shots
    doc = json.loads(run_cli("shots", short_film, "--json", "-q").stdout)
    assert [s["start_frame"] for s in doc["shots"]] == [0, 40, 90]
    assert doc["film"]["frame_count"] == 130


def test_cast_check_reports_each_photo(package_cast, package_photos, tmp_path):
    proc = run_cli("cast", "check", package_cast, "--face-backend", "dlib", "--json", env=env_with_cache(tmp_path))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["photos"]
    assert [(r["name"], r["faces"], r["status"]) for r in rows] == [
        (n, 1, "ok") for n in ("Chandler", "Eileen Collins", "Joey", "Phoebe", "Rachel", "Ross")]
    bad = tmp_path / "bad_cast" / "Pair"
    bad.mkdir(parents=True)
    pair_photo(package_photos, bad / "pair.jpg")
    proc = run_cli("cast", "check", tmp_path / "bad_cast", "--face-backend", "dlib", env=env_with_cache(tmp_path))
    assert proc.returncode == 1 and "2 faces found" in proc.stdout


# ----------------------------------------------------------------------------- bad input

def _not_a_video(tmp_path):
    path = tmp_path / "report.mp4"
    path.write_text("quarterly report\n" * 50)
    return path


def _zero_bytes(tmp_path):
    path = tmp_path / "zero.mp4"
    path.write_bytes(b"")
    return path


def _truncated(tmp_path):
    full = lavfi_film(tmp_path / "full.mp4", "-c:v", "libx264", "-movflags", "+faststart", duration=6,
                      size="480x270")
    cut = tmp_path / "truncated.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    return cut


def _no_video_stream(tmp_path):
    path = tmp_path / "music.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=duration=1", str(path)], check=True)
    return path


@pytest.mark.parametrize("make, problem", [
    (lambda tmp: tmp / "missing.mp4", "no such video file"),
    (_not_a_video, "not a video file"),
    (_truncated, "corrupt or truncated"),
    (_zero_bytes, "empty (0 bytes)"),
    (_no_video_stream, "has no video stream"),
], ids=["missing", "not-a-video", "truncated", "zero-bytes", "no-video-stream"])
def test_bad_film(tmp_path, package_cast, make, problem):
    film = make(tmp_path)
    out = tmp_path / "out"
    proc = run_cli("annotate", film, "--cast", package_cast, "-o", out, env=env_with_cache(tmp_path))
    assert_one_line_error(proc, film, problem)
    assert not out.exists() or not any(out.iterdir())


def _cast_with(tmp_path, package_photos, photo):
    person = tmp_path / "cast" / "Someone"
    person.mkdir(parents=True)
    if photo == "@text":
        (person / "photo.jpg").write_text("not a picture")
    elif photo == "@blank":
        from PIL import Image
        Image.new("RGB", (400, 300), (120, 90, 60)).save(person / "photo.jpg")
    else:
        pair_photo(package_photos, person / "photo.jpg")
    return tmp_path / "cast", person / "photo.jpg"


@pytest.mark.parametrize("photo, problem", [("@text", "not an image"), ("@blank", "no face found"),
                                            ("@pair", "2 faces found")],
                         ids=["not-an-image", "no-face", "two-faces"])
def test_bad_cast_photo(short_film, package_photos, tmp_path, photo, problem):
    cast, bad = _cast_with(tmp_path, package_photos, photo)
    out = tmp_path / "out"
    proc = run_cli("annotate", short_film, "--cast", cast, "-o", out, "--face-backend", "dlib",
                   env=env_with_cache(tmp_path))
    assert_one_line_error(proc, bad, problem)
    assert not any(out.iterdir())


def test_empty_cast_folder(short_film, tmp_path):
    (tmp_path / "cast").mkdir()
    proc = run_cli("annotate", short_film, "--cast", tmp_path / "cast", "-o", tmp_path / "out",
                   env=env_with_cache(tmp_path))
    assert_one_line_error(proc, tmp_path / "cast", "no people")


def test_output_folder_not_writable(short_film, package_cast, tmp_path):
    if os.geteuid() == 0:
        target = "/sys"                       # root writes anywhere else; sysfs refuses new files
    else:
        target = tmp_path / "locked"
        target.mkdir()
        target.chmod(0o500)
    proc = run_cli("annotate", short_film, "--cast", package_cast, "-o", target, env=env_with_cache(tmp_path))
    assert_one_line_error(proc, target, "not writable")


def test_usage_errors_exit_2_in_one_line(short_film):
    proc = run_cli("annotate", short_film, "--no-such-option")
    assert_one_line_error(proc, "No such option", code=2)
    proc = run_cli("annotate", short_film, "--engine", "ida-vlm")
    assert_one_line_error(proc, "--model", code=2)
    proc = run_cli("annotate", short_film, "--max-images", "1")
    assert_one_line_error(proc, "--max-images", code=2)


@pytest.mark.parametrize("error", ["RuntimeError()", "KeyError('k')"])
def test_a_bug_is_one_line_and_its_traceback_shows_only_under_verbose(tmp_path, error):
    """An exception that is not a bad input (a bug): one line naming its type, exit 1; ``-v``
    prints the traceback (an empty message must not break the one line)."""
    import sys

    film = tmp_path / "film.mp4"
    film.write_bytes(b"\0" * 64)
    code = ("import movieid.video as video\n"
            f"def probe(*args, **kwargs): raise {error}\n"
            "video.probe = probe\n"
            "from movieid.__main__ import main\n"
            "main()")
    run = [sys.executable, "-c", code, "annotate", str(film), "-o", str(tmp_path / "out")]
    proc = subprocess.run(run, capture_output=True, text=True, timeout=120)
    name = error.split("(")[0]
    assert_one_line_error(proc, f"movieid: internal error: {name}", "(run with -v for the traceback)")
    assert f"{name}: {name}" not in proc.stderr
    verbose = subprocess.run([*run, "-v"], capture_output=True, text=True, timeout=120)
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr and "internal error" in verbose.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sig, line, code", [("SIGINT", "movieid: interrupted", 130),
                                             ("SIGTERM", "movieid: terminated", 143),
                                             ("SIGINT ignored", None, 0)],
                         ids=["ctrl-c", "sigterm", "ignored"])
def test_a_signal_while_the_command_line_is_still_imported(sig, line, code):
    """The signal comes as Python imports click (as a Ctrl-C right after Enter on a cold start):
    one line and the usual exit code, no traceback; an ignored one stays ignored."""
    import sys

    name = sig.split()[0]
    code_text = ("import builtins, os, signal, sys\n"
                 + ("signal.signal(signal.SIGINT, signal.SIG_IGN)\n" if "ignored" in sig else "")
                 + "real = builtins.__import__\n"
                 "def hooked(name, *args, **kwargs):\n"
                 "    if name == 'click':\n"
                 f"        os.kill(os.getpid(), signal.{name})\n"
                 "    return real(name, *args, **kwargs)\n"
                 "builtins.__import__ = hooked\n"
                 "sys.argv = ['movieid', '--version']\n"
                 "from movieid.__main__ import main\n"
                 "main()\n")
    proc = subprocess.run([sys.executable, "-c", code_text], capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    if line is None:
        assert "movieid" in proc.stdout and not proc.stderr
    else:
        assert proc.stderr == line + "\n" and not proc.stdout


@pytest.mark.parametrize("stop, line, code", [("KeyboardInterrupt()", "movieid: interrupted", 130),
                                              ("__import__('movieid.stop_signals').stop_signals.Terminated()",
                                               "movieid: terminated", 143)], ids=["ctrl-c", "sigterm"])
def test_an_error_that_a_signal_caused_ends_as_the_signal(tmp_path, stop, line, code):
    """A Ctrl-C or SIGTERM while a C extension is imported reaches the command line as that
    extension's ImportError, with the stop as its cause: it still ends as the stop."""
    import sys

    film = tmp_path / "film.mp4"
    film.write_bytes(b"\0" * 64)
    code_text = ("import movieid.video as video\n"
                 "def probe(*args, **kwargs):\n"
                 "    try:\n"
                 f"        raise {stop}\n"
                 "    except BaseException as cause:\n"
                 "        raise ImportError('initialization failed') from cause\n"
                 "video.probe = probe\n"
                 "from movieid.__main__ import main\n"
                 "main()")
    proc = subprocess.run([sys.executable, "-c", code_text, "annotate", str(film), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == code and proc.stderr == line + "\n", proc.stderr


@pytest.fixture(scope="module")
def tiny_film(films):
    """One second of FFmpeg's test pattern: quick to list shots of and to annotate."""
    return lavfi_film(films / "tiny.mp4", "-c:v", "libx264", "-pix_fmt", "yuv420p", duration=1.0)


def _movieid_to(stdout, *args):
    import sys

    return subprocess.run([sys.executable, "-m", "movieid", *map(str, args)], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=120)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("args", [["shots", "@film"], ["--version"]], ids=["shots", "version"])
def test_standard_output_that_cannot_be_written_is_one_line(tiny_film, args):
    with open("/dev/full", "w") as full:
        proc = _movieid_to(full, *(tiny_film if a == "@film" else a for a in args))
    assert proc.returncode == 1
    assert proc.stderr == "movieid: cannot write to standard output: No space left on device\n"


def test_no_standard_output_at_all_is_one_line(tiny_film):
    """Started with standard output closed (``movieid shots film >&-``): an error, not silence."""
    import sys

    proc = subprocess.run([sys.executable, "-m", "movieid", "shots", str(tiny_film)], stderr=subprocess.PIPE,
                          text=True, cwd=REPO, timeout=120, preexec_fn=lambda: os.close(1))
    assert (proc.returncode, proc.stderr) == (1, "movieid: cannot write to standard output: Bad file descriptor\n")


def test_a_closed_pipe_on_standard_output_ends_quietly(tiny_film):
    """``movieid shots film | head -1`` once head has gone: no message, 141 as for SIGPIPE."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = _movieid_to(write, "shots", tiny_film)
    finally:
        os.close(write)
    assert (proc.returncode, proc.stderr) == (141, "")


def test_a_film_name_with_a_newline_stays_on_one_line(tiny_film, tmp_path):
    bad = tmp_path / "bad\nname.mp4"
    bad.write_text("quarterly report\n" * 50)
    proc = run_cli("annotate", bad, "-o", tmp_path / "out")
    assert proc.returncode == 1
    assert proc.stderr == (f"movieid: error: {tmp_path}/bad\\nname.mp4: not a video file FFmpeg can read "
                           "(Invalid data found when processing input)\n")
    assert not (tmp_path / "out").exists()

    archive = tmp_path / "archive"
    archive.mkdir()
    bad.rename(archive / bad.name)
    batch = run_cli("batch", archive, "-o", tmp_path / "batch", "--workers", "1", "--face-backend", "dlib")
    reason = f"{archive}/bad\\nname.mp4: not a video file FFmpeg can read (Invalid data found when processing input)"
    assert batch.returncode == 1 and batch.stderr == f"movieid: WARNING: {reason}\n"
    assert "\n  failed: the 1 film named above; movieid batch-status " in batch.stdout and "bad" not in batch.stdout
    listed = run_cli("batch-status", tmp_path / "batch")
    [row] = listed.stdout.splitlines()
    assert row.startswith("failed      bad\\nname.mp4 ") and row.endswith(f"s  {reason}"), row

    good = tmp_path / "good\nname.mp4"
    good.write_bytes(tiny_film.read_bytes())
    proc = run_cli("annotate", good, "-o", tmp_path / "out", "--face-backend", "dlib", env=env_with_cache(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"good\nname.{f}" for f in ("json", "srt", "vtt")]
    assert f"  wrote {tmp_path}/out/good\\nname.srt\n" in proc.stdout

    folder = tmp_path / "odd\x1b[31mfolder"
    folder.mkdir()
    proc = run_cli("data", "from-annotations", tmp_path / "x.json", "--film", good, "-o", folder)
    assert_one_line_error(proc, "odd\\x1b[31mfolder", code=2)   # click's own message, escaped too
