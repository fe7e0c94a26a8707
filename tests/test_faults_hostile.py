"""Hostile inputs, round three (issue 20): what a file someone shares can make movieid do, and what
a newcomer trips on. Each case runs the real command line (``test_faults.movieid``) or the writer
a user's file reaches, and checks it against something outside this code: a POSIX shell, the
``srt``/``webvtt``/``csv``/OpenTimelineIO readers, a terminal's view of the bytes."""
from __future__ import annotations

import html
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from .test_faults import assert_clean, movieid, one_person_cast

ESC = "\x1b"


def _page_code(page: Path) -> list[str]:
    return [html.unescape(c) for c in re.findall(r"<code>(.*?)</code>", page.read_text(encoding="utf-8"), re.S)]


def _embedded(cache: Path) -> list[Path]:
    """Cast embeddings in a cache folder (the face model that loading a backend builds aside)."""
    return [p for p in cache.rglob("*") if p.is_file() and "models" not in p.relative_to(cache).parts]


# ----------------------------------------------------------------------------- 1. shell commands we print

def test_the_cast_suggestion_page_quotes_the_film_and_names_the_cast_that_works(film, package_cast, tmp_path):
    films = tmp_path / "films"
    films.mkdir()
    hostile = films / "$(touch PWNED);x`touch PWNED2` My Film.mp4"
    shutil.copy(film, hostile)
    known = one_person_cast(package_cast, tmp_path / "known", "Ross")   # the film shows Rachel
    out = tmp_path / "suggested"
    run = movieid("cast", "suggest", hostile, "--cast", known, "-o", out, "--min-shots", "1", "--face-backend", "dlib",
                  "--workers", "1", "-q", tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr
    command = next(c for c in _page_code(out / "index.html") if c.startswith("movieid annotate"))
    assert shlex.split(command) == ["movieid", "annotate", str(hostile), "--cast", str(known)]
    # what a shell makes of it when pasted: the same words, and nothing run
    words = subprocess.run(["bash", "-c", f"set -- {command}; printf '%s\\n' \"$@\""], cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert words == ["movieid", "annotate", str(hostile), "--cast", str(known)]
    assert not list(tmp_path.glob("PWNED*")) and not list(Path.cwd().glob("PWNED*"))
    assert str(known) in _page_code(out / "index.html")        # move the renamed folders there first


# ----------------------------------------------------------------------------- 5. terminal escapes

def test_names_and_paths_shown_on_a_terminal_are_escaped(film, package_cast, tmp_path):
    cast = one_person_cast(package_cast, tmp_path / "cast")
    (cast / f"Evil{ESC}]0;pwned\a").mkdir()                     # no photos: a warning names it
    run = movieid("cast", "check", cast, tmp_path=tmp_path)
    assert run.returncode == 0 and ESC not in run.stdout + run.stderr and "\a" not in run.stderr, run.stderr
    assert "Evil\\x1b]0;pwned\\x07" in run.stderr
    shutil.copy(film, tmp_path / f"a{ESC}[31mred.mp4")
    for args in (("shots", tmp_path / f"a{ESC}[31mred.mp4"),
                 ("annotate", tmp_path / f"a{ESC}[31mred.mp4", "--cast", cast, "-o", tmp_path / "out",
                  "--face-backend", "dlib", "--workers", "1")):
        run = movieid(*args, tmp_path=tmp_path)
        assert run.returncode == 0, run.stderr
        assert ESC not in run.stdout + run.stderr
    assert "a\\x1b[31mred.mp4: 1 shots" in run.stdout          # annotate's summary names the film


# ----------------------------------------------------------------------------- 9, 10, 11. cast names, one check

@pytest.mark.parametrize("name, problem", [("Unknown 1", "stranger's label"), ("unknown  12", "stranger's label"),
                                           ("A --> B", "'<' or '>'"), ("Eve <img>etc", "'<' or '>'")])
def test_a_name_the_outputs_cannot_carry_is_refused_by_cast_check_and_annotate_before_any_work(
        film, package_cast, tmp_path, name, problem):
    cast = one_person_cast(package_cast, tmp_path / "cast")
    shutil.copytree(package_cast / "Ross", cast / name)
    for args in (("cast", "check", cast), ("annotate", film, "--cast", cast, "-o", tmp_path / "out",
                                           "--face-backend", "dlib", "--workers", "1")):
        run = movieid(*args, tmp_path=tmp_path)
        assert_clean(run, 1, problem, name, out=tmp_path / "out")
    assert not _embedded(tmp_path / "cache")                    # refused before any photo was embedded


def test_cast_check_refuses_what_annotate_refuses_one_picture_under_two_names(package_cast, tmp_path):
    cast = one_person_cast(package_cast, tmp_path / "cast", "Ross", "Rachel")
    shutil.copytree(package_cast / "Ross", cast / "Ross Geller")
    run = movieid("cast", "check", cast, tmp_path=tmp_path)
    assert run.returncode == 1 and "the same face as" in run.stdout, run.stdout


def test_overwrite_never_replaces_photos_a_suggestion_did_not_write(film, tmp_path):
    out = tmp_path / "cast"
    (out / "Unknown 1").mkdir(parents=True)
    (out / "Unknown 1" / "portrait.jpg").write_bytes(b"a member's own photo")
    run = movieid("cast", "suggest", film, "-o", out, "--min-shots", "1", "--overwrite", "--face-backend", "dlib",
                  "--workers", "1", tmp_path=tmp_path)
    assert_clean(run, 1, "not suggested photos", "Unknown 1")
    assert (out / "Unknown 1" / "portrait.jpg").read_bytes() == b"a member's own photo"


# ----------------------------------------------------------------------------- 17, 24. cast suggest says so early

def test_cast_suggest_refuses_an_unwritable_output_before_the_analysis(film, package_cast, tmp_path):
    (tmp_path / "a-file").write_text("")
    cast = one_person_cast(package_cast, tmp_path / "cast", "Ross")
    run = movieid("cast", "suggest", film, "--cast", cast, "-o", tmp_path / "a-file" / "out", "--face-backend", "dlib",
                  tmp_path=tmp_path)
    assert_clean(run, 1, "cannot write the suggestions", "a-file")
    assert not _embedded(tmp_path / "cache")                    # nothing was analysed, not even the cast


def test_cast_suggest_says_who_it_leaves_out(film, tmp_path):
    out = tmp_path / "cast"
    run = movieid("cast", "suggest", film, "-o", out, "--face-backend", "dlib", "--workers", "1", tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "1 person seen in fewer than 2 cuts not suggested (Unknown 1)" in run.stderr
    assert "Unknown 1" in (out / "index.html").read_text() and not (out / "Unknown 1").exists()


# ----------------------------------------------------------------------------- 3, 10, 14. writers hold any text

HOSTILE = ["=HYPERLINK(\"http://x\",\"y\")", "+1", "-2 people", "@SUM(A1)", "\tTab", "A --> B",
           "<b>Eve</b> & <c.red>Bob</c>", "x\n\ny", "nul\x00 esc\x1b[31m cr\r end", "Smith; John"]


@pytest.fixture(scope="module")
def hostile_outputs(sample_doc, tmp_path_factory) -> tuple[dict, dict[str, Path]]:
    """The sample film's annotation with hostile names and captions (as an edited JSON or a VLM's
    answer may hold), in every format; the film's path holds a ``%20``, a ``#`` and a ``?``."""
    import copy

    from movieid.writers import output_paths, write_outputs

    doc = copy.deepcopy(sample_doc)
    doc["film"]["path"] = str(tmp_path_factory.mktemp("films") / "x %20#?.mp4")
    for shot, text in zip(doc["shots"], HOSTILE):
        shot["caption"] = text
        shot["names"] = [text, *shot["names"]]
    paths = output_paths(tmp_path_factory.mktemp("hostile"), "film", ["srt", "vtt", "json", "csv", "otio"])
    write_outputs(doc, paths, overwrite=False)
    return doc, paths


def _words(text: str) -> str:
    return " ".join(re.sub("[\x00-\x08\x0b-\x1f\x7f-\x9f]", " ", text).split())


def test_webvtt_escapes_markup_and_reads_back_as_written(hostile_outputs):
    import webvtt

    doc, paths = hostile_outputs
    captions = webvtt.read(str(paths["vtt"])).captions
    assert [c.identifier for c in captions][:len(HOSTILE)] == [f"shot-{s['index']}" for s in doc["shots"]][:len(HOSTILE)]
    raw = paths["vtt"].read_text()
    assert "<b>" not in raw and "<c.red>" not in raw and "& " not in raw and "\x00" not in raw
    for caption, text in zip(captions, HOSTILE):
        # the spec's cue text: character references decoded, the lines as laid out
        assert _words(html.unescape(caption.text.replace("\n", " "))) == _words(text), (caption.text, text)


def test_srt_holds_any_text_and_no_markup(hostile_outputs):
    import srt

    _, paths = hostile_outputs
    subtitles = list(srt.parse(paths["srt"].read_text()))
    assert len(subtitles) >= len(HOSTILE)
    for subtitle, text in zip(subtitles, HOSTILE):
        assert "<" not in subtitle.content and ">" not in subtitle.content and "\n\n" not in subtitle.content
        assert _words(subtitle.content.replace("\n", " ")) == _words(text.replace("<", "\u2039").replace(">", "\u203a"))


def test_csv_cells_never_run_as_formulas_and_names_split_back_exactly(hostile_outputs):
    import csv
    import json

    doc, paths = hostile_outputs
    with open(paths["csv"], newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row, text, shot in zip(rows, HOSTILE, doc["shots"]):
        assert json.loads(row["names"]) == shot["names"] and shot["names"][0] == text
        want = "'" + text if text[0] in "=+-@\t\r" else text
        assert row["caption"] == want, (row["caption"], want)
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for cell in row.values())


def test_otio_target_url_is_a_percent_encoded_file_url(hostile_outputs):
    import urllib.parse
    import urllib.request

    import opentimelineio as otio

    doc, paths = hostile_outputs
    timeline = otio.adapters.read_from_file(str(paths["otio"]))
    url = timeline.tracks[0][0].media_reference.target_url
    assert url.startswith("file:///") and " " not in url and "#" not in url and "?" not in url
    assert urllib.request.url2pathname(urllib.parse.urlparse(url).path) == doc["film"]["path"]


# ----------------------------------------------------------------------------- 19, 21. missing extras

@pytest.fixture(scope="module")
def without_torch(tmp_path_factory) -> Path:
    """A folder that, first on PYTHONPATH, makes ``import torch`` fail as on an install without it."""
    root = tmp_path_factory.mktemp("no_torch")
    (root / "torch").mkdir()
    (root / "torch" / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    return root


@pytest.mark.parametrize("args, extra", [
    (("annotate", "{film}", "--engine", "vlm", "--model", "x", "-o", "{out}"), "hf"),
    (("annotate", "{film}", "--engine", "ida-vlm", "--model", "x", "-o", "{out}"), "vlm"),
    (("train", "--model", "x", "--data", "y", "-o", "{out}"), "train"),
    (("eval", "mmid", "--benchmark", "{film}", "-o", "{out}/p.jsonl", "--model", "x"), "vlm"),
])
def test_a_command_without_its_extra_says_what_to_install(film, tmp_path, without_torch, monkeypatch, args, extra):
    import os

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(without_torch), os.environ.get("PYTHONPATH", "")]))
    run = movieid(*(a.format(film=film, out=tmp_path / "out") for a in args), tmp_path=tmp_path)
    line = assert_clean(run, 1, "needs torch, which is not installed",
                        f"pip install -c constraints.txt -e '.[{extra}]' (in the movieid checkout)")
    assert "internal error" not in line


def test_every_install_hint_names_an_extra_that_exists():
    """Each ``pip install`` a message prints is the checkout's command with an extra setup.py has
    (``movieid[ad]`` named a package that is not on the index, ``[insightface]`` no extra)."""
    from .conftest import REPO

    setup = (REPO / "setup.py").read_text()
    extras = set(re.findall(r'"(\w+)": ', setup.split("extras_require=", 1)[1].split("}", 1)[0]))
    assert {"vlm", "hf", "train", "ray", "ad", "test"} <= extras
    sources = [p for folder in ("movieid", "cli", "models") for p in (REPO / folder).rglob("*.py")]
    hints = []
    for path in sources:
        text = path.read_text()
        assert "movieid[" not in text, path
        hints += [(path, h) for h in re.findall(r"install_hint\('(\w+)'\)", text)]
        hints += [(path, h) for h in re.findall(r"pip install -c constraints.txt -e '\.\[(\w+)\]'", text)]
        for bare in re.findall(r"pip install [^\n\"']*", text):
            assert bare.startswith(("pip install -c constraints.txt -e", "pip install --no-deps silero-vad",
                                    "pip install otio")), (path, bare)
    assert len(hints) >= 5 and all(extra in extras for _, extra in hints), hints


# ----------------------------------------------------------------------------- 8. a decoder stopped by a signal

def _ffmpeg_decoding(children: set[int]) -> list[int]:
    found = []
    for pid in children:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"ffmpeg") and b"rawvideo" in cmdline:
            found.append(pid)
    return found


@pytest.fixture(scope="module")
def long_film(films) -> Path:
    """Long enough (60 s) that its decoding pass is still running when the signal comes."""
    from .conftest import lavfi_film

    path = films / "long_testsrc.mp4"
    return path if path.exists() else lavfi_film(path, "-pix_fmt", "yuv420p", duration=60.0, size="640x360")


@pytest.mark.parametrize("command", ["annotate", "batch"])
def test_ctrl_c_of_the_group_with_sigint_ignored_is_an_interruption_not_a_corrupt_film(long_film, tmp_path, command):
    """Started as a background job of a script (SIGINT ignored), a Ctrl-C of the process group
    stops only FFmpeg: the film was recorded as corrupt and never retried."""
    import os
    import signal
    import sys
    import time

    from .conftest import REPO
    from .helpers.processes import descendants, wait_gone

    source = tmp_path / "films"
    source.mkdir()
    shutil.copy(long_film, source / "long.mp4")
    args = (["annotate", source / "long.mp4", "-o", tmp_path / "out"] if command == "annotate"
            else ["batch", source, "-o", tmp_path / "out"])
    env = {**os.environ, "MOVIEID_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "movieid", *map(str, args), "--workers", "1", "-q"], cwd=REPO,
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    children: set[int] = set()
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline and not _ffmpeg_decoding(children):
        children |= descendants(proc.pid)
        time.sleep(0.05)
    assert _ffmpeg_decoding(children), "the decoding pass never started"
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)                          # a terminal's Ctrl-C: the whole group
    out, err = proc.communicate(timeout=120)
    assert "corrupt" not in err and "Traceback" not in err, err
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "movieid: interrupted", (proc.returncode, err)
    assert not wait_gone(children)
    if command == "batch":
        from .test_faults import journal_states

        assert set(journal_states(tmp_path / "out").values()) == {"interrupted"}


# ----------------------------------------------------------------------------- 17, 24. inputs first; a growing file

def test_a_film_still_being_written_is_refused_and_nothing_is_written(long_film, tmp_path):
    """A recording still growing while it is annotated: one line, nothing written."""
    import os
    import threading
    import time

    film = tmp_path / "recording.mp4"
    shutil.copy(long_film, film)
    stop = threading.Event()

    def grow():   # a recorder appending to the file (what it appends does not matter here)
        while not stop.is_set():
            with open(film, "ab") as handle:
                handle.write(os.urandom(1024))
            time.sleep(0.2)

    writer = threading.Thread(target=grow)
    writer.start()
    try:
        run = movieid("annotate", film, "-o", tmp_path / "out", "--workers", "1", tmp_path=tmp_path)
    finally:
        stop.set()
        writer.join()
    assert_clean(run, 1, "changed while it was being read", "recording.mp4", out=tmp_path / "out")


def test_a_missing_cast_is_reported_before_existing_outputs(film, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "rachel.srt").write_text("mine")
    run = movieid("annotate", film, "--cast", tmp_path / "nocast", "-o", tmp_path / "out", tmp_path=tmp_path)
    assert_clean(run, 1, "no such cast folder", "nocast")


# ----------------------------------------------------------------------------- 20. progress on a terminal

def test_progress_bars_end_at_their_totals_and_leave_the_next_line_at_its_start(sample, tmp_path):
    """On an 80-column terminal: every bar's last count is its total (shots stopped at 768/833,
    the cast at 0/6 with a warm cache), and the summary starts at the first column (it started in
    the last, where closing the bars had left the cursor)."""
    import os
    import sys

    from .conftest import REPO
    from .helpers.processes import run_in_terminal

    film, cast, _ = sample
    env = {**os.environ, "MOVIEID_CACHE_DIR": str(tmp_path / "cache"), "TERM": "xterm"}
    for _ in range(2):   # the second run with a warm cast cache
        screen = run_in_terminal([sys.executable, "-m", "movieid", "annotate", str(film), "--cast", str(cast), "-o",
                                  str(tmp_path / "out"), "--overwrite", "--workers", "1", "--face-backend", "dlib"],
                                 REPO, env)
        for step in ("cast", "shots", "faces"):
            counts = re.findall(rf"\r{step}:[^\r\n]*?\| *(\d+)/(\d+) ", screen)
            assert counts and counts[-1][0] == counts[-1][1], (step, counts[-3:])
        before = screen.split(f"{film.name}: ")[0]
        assert before.endswith(("\r", "\n")), repr(before[-120:])   # the cursor at a line's start


# ----------------------------------------------------------------------------- 4, 13, 15. report from a JSON

def _report_doc(sample_doc, tmp_path: Path, photo: Path, film: str) -> Path:
    import copy
    import json

    doc = copy.deepcopy(sample_doc)
    for member in doc["cast"]["members"]:
        member["photos"][0]["path"] = str(photo)
    doc["film"]["path"] = film
    path = tmp_path / "shared.json"
    path.write_text(json.dumps(doc))
    return path


def _embedded_photos(page: Path) -> int:
    return len(re.findall(r"\.id-photo-\d+ \{ background-image", page.read_text()))


def test_report_embeds_only_photos_from_a_folder_the_user_names(sample_doc, sample, tmp_path):
    """A JSON someone shares can name any picture on this disk as a cast photo: the page would
    carry it away. Only photos under --embed-photos-from are embedded (links followed first)."""
    film, cast, _ = sample
    secret = tmp_path / "private" / "secret.jpg"
    secret.parent.mkdir()
    shutil.copy(next(cast.rglob("*.jpg")), secret)
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    (trusted / "link.jpg").symlink_to(secret)                     # inside by name, outside in fact
    for photo, flag, embedded in ((secret, None, 0), (secret, cast, 0), (trusted / "link.jpg", trusted, 0),
                                  (secret, secret.parent, 6)):
        page = tmp_path / "page.html"
        args = ["report", _report_doc(sample_doc, tmp_path, photo, str(film)), "-o", page, "--overwrite",
                *(["--embed-photos-from", flag] if flag else [])]
        run = movieid(*args, tmp_path=tmp_path)
        assert run.returncode == 0, run.stderr
        assert _embedded_photos(page) == embedded, (photo, flag)
        assert ("not embedded" in run.stderr) == (flag is None)


@pytest.mark.parametrize("edit, problem", [
    (lambda t: t.replace('"end": 4.0', '"end": 1e308', 1), "outside the film"),
    (lambda t: t.replace('"end": 4.0', '"end": Infinity', 1), "Infinity is not a JSON number"),
    (lambda t: re.sub(r'"frame": \d+', '"frame": 1000000000', t, count=1), "frame 1000000000 is not in the film"),
    (lambda t: "[" * 100_000 + "]" * 100_000, "nested too deeply"),
])
def test_report_of_a_hostile_json_is_one_line_naming_it(sample_doc, tmp_path, edit, problem):
    import json

    path = tmp_path / "edited.json"
    path.write_text(edit(json.dumps(sample_doc)))
    run = movieid("report", path, "-o", tmp_path / "page.html", tmp_path=tmp_path)
    assert_clean(run, 1, "edited.json", problem)
    assert not (tmp_path / "page.html").exists()


def test_the_review_page_finds_the_film_beside_it(sample_doc, sample, tmp_path):
    """The JSON records the film's path as annotate was given it (relative to where it ran):
    the page finds the film beside it, as the README says."""
    film, cast, _ = sample
    (tmp_path / "review").mkdir()
    shutil.copy(film, tmp_path / "review" / film.name)
    source = _report_doc(sample_doc, tmp_path, next(cast.rglob("*.jpg")), f"somewhere/else/{film.name}")
    run = movieid("report", source, "-o", tmp_path / "review" / "page.html", tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr
    assert f'src="{film.name}"' in (tmp_path / "review" / "page.html").read_text()


def test_every_person_on_the_review_page_has_a_hue_of_their_own(sample_doc):
    """Item 22: two people shared one green (hues 137 and 105)."""
    from movieid.report.review import _people

    hues = [p["hue"] for p in _people(sample_doc)]
    assert len(hues) == 7
    apart = min(min(abs(a - b), 360 - abs(a - b)) for i, a in enumerate(hues) for b in hues[i + 1:])
    assert apart >= 360 / len(hues) - 1, hues
