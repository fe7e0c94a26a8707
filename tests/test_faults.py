"""Fault injection: hostile and unlucky inputs, signals and kills (issue 8).

Every case runs the real command line in a subprocess and asserts the exit code, the one line
on stderr, no traceback, no output or temporary file left behind, and no process outliving
the run (every descendant seen while it ran is gone afterwards).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np
import pytest

from .conftest import REPO
from .helpers.processes import descendants, wait_gone

JOURNAL = ".movieid-batch.sqlite"
OUTPUT_SUFFIXES = (".srt", ".vtt", ".json")


# ----------------------------------------------------------------------------- running the CLI

@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    children: set[int] = field(default_factory=set)   # every descendant seen while it ran
    signalled: bool = False                             # the signal reached a running process


def movieid(*args, tmp_path: Path, until=None, send: signal.Signals | None = None, group: bool = False,
            timeout: float = 180) -> Run:
    """Run ``movieid ARGS``, watching its process tree; once ``until(children)`` holds, send
    ``send`` to it (to its whole process group with ``group``, as a terminal's Ctrl-C does)."""
    env = {**os.environ, "MOVIEID_CACHE_DIR": str(tmp_path / "cache")}
    logs = tmp_path / f"logs-{time.monotonic_ns()}"
    logs.mkdir()
    with open(logs / "out", "w+") as out, open(logs / "err", "w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "movieid", *map(str, args)], cwd=REPO, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
        children: set[int] = set()
        signalled = False
        deadline = time.time() + timeout
        try:
            while proc.poll() is None and time.time() < deadline:
                children |= descendants(proc.pid)
                if until is not None and until(children) and send is not None and not signalled:
                    (os.killpg if group else os.kill)(proc.pid, send)
                    signalled = True
                time.sleep(0.01)
            assert proc.poll() is not None, f"movieid {' '.join(map(str, args))} hung for {timeout} s"
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        out.seek(0), err.seek(0)
        return Run(proc.returncode, out.read(), err.read(), children, signalled)


def workers(children: set[int]) -> int:
    """How many of ``children`` are multiprocessing workers (started or starting)."""
    count = 0
    for pid in children:
        with contextlib.suppress(OSError):
            count += b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    return count


def assert_clean(run: Run, code: int, *needles, out: Path | None = None) -> str:
    """Exit ``code``, one line on stderr holding ``needles``, no traceback, no process left,
    and (with ``out``) no output or temporary file in ``out``."""
    assert run.returncode == code, (run.returncode, run.stderr)
    lines = run.stderr.rstrip("\n").split("\n")    # a blank line counts too
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr, run.stderr
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    assert not wait_gone(run.children), "processes outlived the run"
    if out is not None:
        assert not outputs(out), outputs(out)
        assert not temp_files(out), temp_files(out)
    return lines[0]


def outputs(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.suffix in OUTPUT_SUFFIXES) if folder.exists() else []


def temp_files(folder: Path) -> list[Path]:
    return sorted(Path(folder).rglob("*.tmp")) if folder.exists() else []


# ----------------------------------------------------------------------------- fixtures

def one_person_cast(package_cast: Path, root: Path, *names: str) -> Path:
    for name in names or ("Rachel",):
        shutil.copytree(package_cast / name, root / name)
    return root


def journal_states(out: Path) -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(out / JOURNAL)) as db:
        return dict(db.execute("SELECT key, state FROM films").fetchall())


# ----------------------------------------------------------------------------- 1. non-regular files

def test_named_pipe_in_a_cast_folder_is_listed_by_cast_check_at_once(package_cast, tmp_path):
    cast = one_person_cast(package_cast, tmp_path / "cast")
    os.mkfifo(cast / "B.jpg")
    run = movieid("cast", "check", cast, "--face-backend", "dlib", tmp_path=tmp_path, timeout=90)
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    rows = run.stdout.strip().splitlines()
    assert len(rows) == 2 and "Rachel" in run.stdout
    fifo_row = next(r for r in rows if "B.jpg" in r)
    assert "named pipe" in fifo_row
    assert not wait_gone(run.children)


def test_named_pipe_in_a_cast_folder_stops_annotate_at_once(film, package_cast, tmp_path):
    cast = one_person_cast(package_cast, tmp_path / "cast")
    os.mkfifo(cast / "B.jpg")
    out = tmp_path / "out"
    run = movieid("annotate", film, "--cast", cast, "-o", out, "--face-backend", "dlib", tmp_path=tmp_path,
                  timeout=90)
    assert_clean(run, 1, cast / "B.jpg", "named pipe", out=out)


def test_named_pipe_as_the_film(tmp_path):
    fifo = tmp_path / "film.mp4"
    os.mkfifo(fifo)
    run = movieid("annotate", fifo, "-o", tmp_path / "out", tmp_path=tmp_path, timeout=60)
    assert_clean(run, 1, fifo, "named pipe", out=tmp_path / "out")
    run = movieid("shots", fifo, tmp_path=tmp_path, timeout=60)
    assert_clean(run, 1, fifo, "named pipe")


def test_named_pipes_in_a_batch_manifest_and_as_the_manifest(film, tmp_path):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    manifest = tmp_path / "films.csv"
    manifest.write_text(f"film\n{film}\n{fifo}\n")
    out = tmp_path / "out"
    run = movieid("batch", manifest, "-o", out, "--face-backend", "dlib", "--workers", "1", "-q",
                  tmp_path=tmp_path, timeout=120)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    states = journal_states(out)
    assert sorted(states.values()) == ["done", "failed"], states
    assert not wait_gone(run.children)

    fifo_manifest = tmp_path / "pipe.csv"
    os.mkfifo(fifo_manifest)
    run = movieid("batch", fifo_manifest, "-o", tmp_path / "out2", tmp_path=tmp_path, timeout=60)
    assert_clean(run, 1, fifo_manifest, "named pipe")


# ----------------------------------------------------------------------------- 2. kill -9

def test_kill_9_of_annotate_leaves_no_worker_behind(film, package_cast, tmp_path):
    out = tmp_path / "out"
    run = movieid("annotate", film, "--cast", package_cast, "-o", out, "--face-backend", "dlib", "--workers", "2",
                  "-q", tmp_path=tmp_path, until=lambda children: workers(children) >= 1, send=signal.SIGKILL)
    assert run.signalled, "annotate finished before its workers started"
    assert run.returncode == -signal.SIGKILL
    assert not wait_gone(run.children), "worker processes outlived the killed annotate"
    assert not outputs(out)


def test_kill_9_of_a_batch_shows_interrupted_and_pending_films(archive, package_cast, tmp_path):
    out = tmp_path / "out"

    def started(children):
        return children and (out / JOURNAL).exists() and "running" in journal_states(out).values()
    run = movieid("batch", archive, "-o", out, "--cast", package_cast, "--face-backend", "dlib", "--workers", "1",
                  "-q", tmp_path=tmp_path, until=started, send=signal.SIGKILL)
    assert run.signalled and run.returncode == -signal.SIGKILL
    assert not wait_gone(run.children)
    assert set(journal_states(out)) == {"a/film.mp4", "b/film.mp4", "c/film.mp4"}   # all recorded at start
    status = movieid("batch-status", out, tmp_path=tmp_path)
    assert status.returncode == 0, status.stderr
    states = {line.split()[1]: line.split()[0] for line in status.stdout.strip().splitlines()}
    assert "running" not in states.values(), status.stdout
    assert "interrupted" in states.values() and set(states.values()) <= {"interrupted", "pending", "done"}
    assert "interrupted" in status.stderr


# ----------------------------------------------------------------------------- 3. Ctrl-C and SIGTERM

SIGNALS = [(signal.SIGINT, True, "movieid: interrupted", 130), (signal.SIGTERM, False, "movieid: terminated", 143)]


@pytest.mark.parametrize("command", ["annotate", "batch"])
@pytest.mark.parametrize("sig, group, line, code", SIGNALS, ids=["ctrl-c", "sigterm"])
def test_signal_while_workers_start(film, archive, package_cast, tmp_path, command, sig, group, line, code):
    """Ctrl-C goes to the whole process group (as from a terminal), SIGTERM to movieid alone."""
    out = tmp_path / "out"
    source = ["annotate", film] if command == "annotate" else ["batch", archive]
    run = movieid(*source, "--cast", package_cast, "-o", out, "--face-backend", "dlib", "--workers", "2", "-q",
                  tmp_path=tmp_path, until=lambda children: workers(children) >= 1, send=sig, group=group)
    assert run.signalled, f"{command} finished before its workers started"
    assert assert_clean(run, code, out=out) == line
    if command == "batch":
        states = journal_states(out)
        assert set(states) == {"a/film.mp4", "b/film.mp4", "c/film.mp4"}
        assert "interrupted" in states.values() and set(states.values()) <= {"interrupted", "pending"}, states


# ----------------------------------------------------------------------------- 4. no silent overwrite

def test_an_output_that_appears_during_the_run_is_not_replaced(film, package_cast, tmp_path):
    out = tmp_path / "out"
    srt = out / "rachel.srt"

    def workers_up(children):
        if workers(children) >= 1 and not srt.exists():
            srt.write_text("someone else's subtitles\n")
        return False
    run = movieid("annotate", film, "--cast", package_cast, "-o", out, "--face-backend", "dlib", "--workers", "2",
                  "-q", tmp_path=tmp_path, until=workers_up)
    assert srt.exists(), "the run ended before its workers started"
    assert_clean(run, 1, srt, "--overwrite")
    assert srt.read_text() == "someone else's subtitles\n"
    assert outputs(out) == [srt] and not temp_files(out)


def test_an_output_that_cannot_be_placed_puts_back_what_overwrite_replaced(film, package_cast, tmp_path):
    """--overwrite, and the JSON's name is taken by a folder: the new SRT and WebVTT, placed
    first, are taken back and the earlier ones restored; the line names the JSON."""
    out = tmp_path / "out"
    args = ("annotate", film, "--cast", package_cast, "-o", out, "--face-backend", "dlib", "-q")
    assert movieid(*args, tmp_path=tmp_path).returncode == 0
    (out / "rachel.json").unlink()
    (out / "rachel.json").mkdir()
    before = {p.name: p.read_bytes() for p in outputs(out) if p.is_file()}
    run = movieid(*args, "--overwrite", "--min-duration", "2.5", tmp_path=tmp_path)
    assert_clean(run, 1, out / "rachel.json", "Is a directory")
    assert {p.name: p.read_bytes() for p in outputs(out) if p.is_file()} == before and set(before) == {"rachel.srt", "rachel.vtt"}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_runs_checking_one_output_folder_at_once_do_not_trip_each_other(tmp_path):
    """Two runs start together: each probes that the folder is writable; neither may see the other's probe."""
    from concurrent.futures import ThreadPoolExecutor

    from movieid.writers import check_outputs, output_paths

    def check(i: int) -> None:
        for _ in range(200):
            check_outputs(output_paths(tmp_path / "out", f"film{i}", ["srt"]), overwrite=False)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(check, range(4)))
    assert list((tmp_path / "out").iterdir()) == []


def test_two_runs_to_the_same_output_do_not_both_succeed(film, package_cast, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "MOVIEID_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "movieid", "annotate", str(film), "--cast", str(package_cast), "-o", str(out),
           "--face-backend", "dlib", "--workers", "1", "-q"]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for p in procs:
        p.stderr.close()
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    failed = next(err for code, err in results if code == 1)
    assert len(failed.strip().splitlines()) == 1 and "--overwrite" in failed and "Traceback" not in failed
    assert [p.name for p in outputs(out)] == ["rachel.json", "rachel.srt", "rachel.vtt"]
    assert "Rachel" in (out / "rachel.srt").read_text() and not temp_files(out)


# ----------------------------------------------------------------------------- 5. finite numbers

def _float_options():
    """(command path, option) for every float option of every command."""
    from movieid.cli.main import cli

    found = []

    def walk(command, path):
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, path + [name])
            return
        for param in command.params:
            kind = param.type
            if isinstance(param, click.Option) and (isinstance(kind, click.types.FloatParamType)
                                                    or getattr(kind, "name", "") == "number"):
                found.append((tuple(path), param.opts[-1] if param.opts[-1].startswith("--") else param.opts[0]))
    walk(cli, [])
    return found


REQUIRED = {("annotate",): ["film.mp4"], ("shots",): ["film.mp4"], ("batch",): ["src", "-o", "out"],
            ("models", "download"): ["insightface"], ("train",): ["--model", "m", "--data", "d", "-o", "o"]}


def test_every_float_option_refuses_nan_and_infinity(tmp_path):
    from click.testing import CliRunner

    from movieid.cli.main import cli

    options = _float_options()
    assert {o for _, o in options} >= {"--threshold", "--min-shot-len", "--max-shot-len", "--timeout"}
    runner = CliRunner()
    for path, option in options:
        for value in ("nan", "inf", "-inf", "NaN", "Infinity"):
            result = runner.invoke(cli, [*path, *REQUIRED.get(path, []), option, value])
            lines = result.output.strip().splitlines()
            assert result.exit_code == 2, (path, option, value, result.output)
            assert len(lines) == 1 and option in lines[0] and "finite" in lines[0], (path, option, lines)
    run = movieid("annotate", "film.mp4", "--threshold", "nan", tmp_path=tmp_path)
    assert_clean(run, 2, "--threshold", "not a finite number")


def test_usage_errors_found_after_parsing_exit_2(film, tmp_path):
    run = movieid("annotate", film, "--min-face", "2000", "--face-size", "1280", "-o", tmp_path / "out",
                  tmp_path=tmp_path)
    assert_clean(run, 2, "--min-face", out=tmp_path / "out")
    run = movieid("batch", film.parent, "-o", tmp_path / "out", "--min-face", "2000", tmp_path=tmp_path)
    assert_clean(run, 2, "--min-face")


# ----------------------------------------------------------------------------- 6. 16-bit photos

def _grey16_photo(package_cast: Path, path: Path) -> Path:
    """Rachel's reference photo as a 16-bit greyscale PNG (full 0..65535 range)."""
    from PIL import Image

    with Image.open(next((package_cast / "Rachel").iterdir())) as photo:
        grey = np.asarray(photo.convert("L"), dtype=np.uint16) * 257
    Image.fromarray(grey).save(path)        # a uint16 array is saved as a 16-bit PNG
    return path


def test_a_16_bit_greyscale_photo_is_scaled_not_clipped(package_cast, tmp_path):
    from PIL import Image

    from movieid.models.images import load_rgb

    photo = _grey16_photo(package_cast, tmp_path / "rachel16.png")
    with Image.open(photo) as image:
        assert image.mode.startswith("I") and np.asarray(image).max() > 255   # really 16 bits on disk
        expected = (np.asarray(image).astype(np.float64) / 257).round()
    rgb = load_rgb(photo)
    assert rgb.dtype == np.uint8 and rgb.shape[2] == 3
    assert np.abs(rgb[..., 0].astype(np.float64) - expected).max() <= 1
    assert rgb.std() > 20                                       # not a white page

    cast = tmp_path / "cast"
    (cast / "Rachel").mkdir(parents=True)
    shutil.move(str(photo), cast / "Rachel" / "rachel16.png")
    run = movieid("cast", "check", cast, "--face-backend", "dlib", tmp_path=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert " 1 face " in run.stdout and "ok" in run.stdout


# ----------------------------------------------------------------------------- 7. unreadable photos

def _loop_photo(folder: Path) -> Path:
    loop = folder / "loop.jpg"
    loop.symlink_to(loop.name)           # a symlink to itself
    return loop


def _directory_photo(folder: Path) -> Path:
    path = folder / "dir.jpg"
    path.mkdir()
    return path


def _no_permission_photo(folder: Path) -> Path:
    if os.geteuid() == 0:
        pytest.skip("root reads any file: the symlink loop and directory cases cover unreadable photos")
    path = folder / "locked.jpg"
    shutil.copy(next(p for p in folder.iterdir() if p.suffix == ".jpg"), path)
    path.chmod(0)
    return path


@pytest.mark.parametrize("make, problem", [(_loop_photo, "symbolic link loop"), (_directory_photo, "directory"),
                                           (_no_permission_photo, "permission denied")],
                         ids=["symlink-loop", "directory", "no-permission"])
def test_unreadable_photo_has_its_own_line_and_can_be_skipped(film, package_cast, tmp_path, make, problem):
    cast = one_person_cast(package_cast, tmp_path / "cast", "Rachel", "Ross")
    bad = make(cast / "Rachel")
    # listed in a manifest: a folder layout passes over a sub-folder however it is named
    (cast / "cast.yaml").write_text("members:\n"
                                    f"  - name: Rachel\n    images: [Rachel/rachel.jpg, Rachel/{bad.name}]\n"
                                    "  - name: Ross\n    folder: Ross\n")
    check = movieid("cast", "check", cast, "--face-backend", "dlib", tmp_path=tmp_path)
    assert check.returncode == 1 and "Traceback" not in check.stderr, check.stderr
    rows = check.stdout.strip().splitlines()
    assert len(rows) == 3 and problem in next(r for r in rows if bad.name in r), check.stdout

    out = tmp_path / "out"
    strict = movieid("annotate", film, "--cast", cast, "-o", out, "--face-backend", "dlib", "-q",
                     tmp_path=tmp_path)
    assert_clean(strict, 1, bad, problem, out=out)
    lenient = movieid("annotate", film, "--cast", cast, "-o", out, "--face-backend", "dlib", "--no-cast-strict",
                      "-q", tmp_path=tmp_path)
    assert lenient.returncode == 0, lenient.stderr
    assert "Rachel" in (out / "rachel.srt").read_text()


# ----------------------------------------------------------------------------- 7. the journal's disk

@contextlib.contextmanager
def small_disk(path: Path, size: str = "1m"):
    """A tiny tmpfs mounted at ``path`` (needs root with CAP_SYS_ADMIN; skipped otherwise)."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True) if os.geteuid() == 0 else None
    if mounted is None or mounted.returncode != 0:
        pytest.skip("cannot mount a small file system here (needs root and CAP_SYS_ADMIN)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(disk: Path) -> None:
    with open(disk / "filler", "wb", buffering=0) as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 4096)


def test_a_full_disk_under_the_journal_has_its_own_line(archive, tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        (disk / "out").mkdir()
        _fill(disk)
        run = movieid("batch", archive, "-o", disk / "out", "--face-backend", "dlib", tmp_path=tmp_path)
        line = assert_clean(run, 1, disk / "out" / JOURNAL, "disk is full", out=disk / "out")
        assert "unreadable" not in line


def test_a_read_only_journal_has_its_own_line(archive, tmp_path):
    from movieid.batch.journal import Journal

    with small_disk(tmp_path / "disk") as disk:
        (disk / "out").mkdir()
        Journal(disk / "out").close()
        (disk / "out" / ".movieid-batch.lock").touch()
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        run = movieid("batch", archive, "-o", disk / "out", "--face-backend", "dlib", tmp_path=tmp_path)
        line = assert_clean(run, 1, disk / "out", "not writable")
        assert "unreadable" not in line


def test_a_journal_that_is_not_a_file(archive, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / JOURNAL)
    run = movieid("batch", archive, "-o", out, "--face-backend", "dlib", tmp_path=tmp_path, timeout=60)
    assert_clean(run, 1, out / JOURNAL, "named pipe", out=out)
    status = movieid("batch-status", out, tmp_path=tmp_path, timeout=60)
    assert_clean(status, 1, out / JOURNAL, "named pipe")


# ----------------------------------------------------------------------------- 9. cast names and YAML

def test_names_differing_only_in_unicode_normalisation_are_one_person(package_cast, tmp_path):
    from movieid.cast import discover

    nfc, nfd = unicodedata.normalize("NFC", "Zoë"), unicodedata.normalize("NFD", "Zoë")
    assert nfc != nfd
    cast = tmp_path / "cast"
    shutil.copytree(package_cast / "Rachel", cast / nfc)
    shutil.copytree(package_cast / "Phoebe", cast / nfd)
    run = movieid("cast", "check", cast, "--face-backend", "dlib", tmp_path=tmp_path)
    assert_clean(run, 1, cast, "lists", "twice")

    shutil.rmtree(cast / nfc)
    assert [e.name for e in discover(cast)] == [nfc]            # names come out in NFC
    (cast / "cast.yaml").write_text(f"- name: {nfd}\n  folder: {nfd}\n- name: {nfc}\n  folder: {nfd}\n",
                                    encoding="utf-8")
    with pytest.raises(Exception, match="twice"):
        discover(cast)


def test_a_yaml_error_names_its_line(package_cast, tmp_path):
    cast = one_person_cast(package_cast, tmp_path / "cast")
    (cast / "cast.yaml").write_text("members:\n  - name: Rachel\n   folder: Rachel\n")   # bad indent
    run = movieid("cast", "check", cast, "--face-backend", "dlib", tmp_path=tmp_path)
    assert_clean(run, 1, cast / "cast.yaml", "line 3")
    (cast / "cast.yaml").unlink()
    (cast / "cast.json").write_text('{"members": [\n  {"name": "Rachel",}\n]}\n')
    run = movieid("cast", "check", cast, "--face-backend", "dlib", tmp_path=tmp_path)
    assert_clean(run, 1, cast / "cast.json", "line 2")


def _niceness(_state) -> int:
    return os.nice(0)


def _no_state() -> None:
    return None


def test_workers_give_way_to_the_process_that_feeds_them():
    """Face workers run below the parent's CPU priority, so decoding and the GPU's caption thread
    are not starved when every core is busy."""
    from movieid.workers import WORKER_NICENESS, WorkerPool

    with WorkerPool(2, _no_state) as pool:
        nice = {pool.submit(_niceness).result(timeout=60) for _ in range(4)}
    assert nice == {min(19, os.nice(0) + WORKER_NICENESS)}
