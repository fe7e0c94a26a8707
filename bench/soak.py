"""Soak test: a batch killed with SIGKILL at random moments and resumed, again and again.

    python bench/soak.py                       # 50 films, 10 kills (builds them into a temp folder)
    python bench/soak.py --films 20 --kills 4 --seed 3

The archive: short real films (card players of insightface's t1.jpg, two shots each) and a
mix of bad files (truncated, not a video, empty, a named pipe). ``movieid batch`` runs with
two film workers; each round it is killed with SIGKILL at a random moment (the main process
only: its workers must notice and exit by themselves), then resumed. After each kill the
table shows the films done so far, how many of them have incomplete outputs (lost: must be
0), the films that were started again (redone: those in flight at the kill), and the
processes of the killed batch still alive 5 s later (must be 0). A third of the kills come
during start-up (0.5-10 s after it), the others 0-3 s after 1-6 more films are done. A last run finishes the
batch; every good film must be done with complete outputs, every bad one failed.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from movieid.filmmaker import FilmSpec, ShotSpec, make_film  # noqa: E402
from sample_videos.build_sample import build_cast, crop, package_photo  # noqa: E402
from tests.helpers.processes import descendants, wait_gone  # noqa: E402

JOURNAL = ".movieid-batch.sqlite"
BAD_KINDS = ("truncated", "text", "empty")


def build_archive(root: Path, films: int, bad: int, rng: random.Random) -> tuple[set[str], set[str]]:
    """``films`` files under ``root`` (``bad`` of them broken) and a named pipe; returns the
    keys of the good and of the bad films."""
    t1 = package_photo("insightface", "data", "images", "t1.jpg")
    base = make_film(FilmSpec([ShotSpec(t1, 25, "static", ("Rachel",), crop=crop(0, 250, 270, 152)),
                               ShotSpec(t1, 25, "pan_right", ("Ross", "Chandler"), crop=crop(400, 250, 500, 281))],
                              width=480, height=270), root.parent / "base.mp4")
    data = base.read_bytes()
    kinds = ["good"] * (films - bad) + [BAD_KINDS[k % len(BAD_KINDS)] for k in range(bad)]
    rng.shuffle(kinds)
    good, broken = set(), set()
    for number, kind in enumerate(kinds):
        key = f"reel{number // 10}/film{number:02d}.mp4"
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "good":
            path.write_bytes(data)
        elif kind == "truncated":
            path.write_bytes(data[: len(data) // 3])
        elif kind == "text":
            path.write_text("not a film\n" * 100)
        else:
            path.write_bytes(b"")
        (good if kind == "good" else broken).add(key)
    os.mkfifo(root / "reel0" / "pipe.mp4")          # not a regular file: never a film, never opened
    return good, broken


def journal(out: Path) -> dict[str, tuple[str, int]]:
    if not (out / JOURNAL).exists():
        return {}
    with contextlib.closing(sqlite3.connect(out / JOURNAL)) as db:
        return {k: (s, a) for k, s, a in db.execute("SELECT key, state, attempts FROM films")}


def complete(out: Path, key: str) -> bool:
    """The film's three outputs are there and whole."""
    stem = out / key[: -len(".mp4")]
    try:
        doc = json.loads(stem.with_suffix(".json").read_text())
        return bool(doc["shots"]) and stem.with_suffix(".srt").read_text().strip() != "" \
            and stem.with_suffix(".vtt").read_text().startswith("WEBVTT")
    except (OSError, ValueError, KeyError):
        return False


def done_count(out: Path) -> int:
    try:
        return sum(s == "done" for s, _ in journal(out).values())
    except sqlite3.Error:
        return 0


def run_batch(src: Path, out: Path, cast: Path, env: dict, kill: tuple[str, float, int] | None = None
              ) -> tuple[int, set[int], bool]:
    """One ``movieid batch`` run to its end, or SIGKILLed as ``kill`` says: ``("start", s, 0)``
    s seconds after the start, ``("work", s, n)`` s seconds after n more films are done."""
    cmd = [sys.executable, "-m", "movieid", "batch", str(src), "-o", str(out), "--cast", str(cast),
           "--face-backend", "dlib", "--workers", "2", "-q"]
    before = done_count(out)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    children: set[int] = set()
    phase, seconds, films = kill or ("", 0.0, 0)
    armed = time.time() if phase == "start" else None
    killed = False
    while proc.poll() is None:
        children |= descendants(proc.pid)
        if phase == "work" and armed is None and done_count(out) >= before + films:
            armed = time.time()
        if armed is not None and time.time() - armed >= seconds:
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.02)
    proc.wait()
    return proc.returncode, children, killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--films", type=int, default=50)
    parser.add_argument("--bad", type=int, default=8, help="how many of the films are broken")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--max-films", type=int, default=6,
                        help="most rounds: kill after 1..N more films are done (and a random 0-3 s)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="movieid-soak-") as tmp:
        tmp = Path(tmp)
        src, out, cast = tmp / "archive", tmp / "out", tmp / "cast"
        src.mkdir()
        good, broken = build_archive(src, args.films, args.bad, rng)
        build_cast(package_photo("insightface", "data", "images", "t1.jpg"),
                   package_photo("skimage", "data", "astronaut.png"), cast)
        env = {**os.environ, "MOVIEID_CACHE_DIR": str(tmp / "cache")}
        print(f"{args.films} films ({len(broken)} broken), {args.kills} SIGKILLs, seed {args.seed}")
        print("| round | killed | done | lost | redone | interrupted | processes left |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        totals = {"lost": 0, "left": 0}
        began = time.time()
        for round_ in range(1, args.kills + 1):
            if rng.random() < 1 / 3:      # during start-up: discovery, journal, workers loading models
                kill = ("start", rng.uniform(0.5, 10.0), 0)
                when = f"{kill[1]:.1f} s after the start"
            else:                         # in the middle of the work: films in flight
                kill = ("work", rng.uniform(0.0, 3.0), rng.randint(1, args.max_films))
                when = f"{kill[1]:.1f} s after {kill[2]} more done"
            _, children, killed = run_batch(src, out, cast, env, kill)
            left = wait_gone(children, timeout=5.0)
            states = journal(out)
            done = {k for k, (s, _) in states.items() if s == "done"}
            lost = {k for k in done if not complete(out, k)}
            redone = sum(a - 1 for k, (s, a) in states.items() if k in good and a > 1)
            status = subprocess.run([sys.executable, "-m", "movieid", "batch-status", str(out)], cwd=REPO,
                                    capture_output=True, text=True, env=env)
            interrupted = status.stdout.count("interrupted")
            assert "running" not in status.stdout, status.stdout
            totals["lost"] += len(lost)
            totals["left"] += len(left)
            print(f"| {round_} | {when if killed else 'no: finished first'} | {len(done)} | {len(lost)} | "
                  f"{redone} | {interrupted} | {len(left)} |")
            for pid in left:                     # never leave them to the machine
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        code, children, _ = run_batch(src, out, cast, env)
        left = wait_gone(children, timeout=5.0)
        states = journal(out)
        done = {k for k, (s, _) in states.items() if s == "done"}
        failed = {k for k, (s, _) in states.items() if s == "failed"}
        missing = good - {k for k in done if complete(out, k)}
        redone = sum(a - 1 for k, (s, a) in states.items() if k in good and a > 1)
        temps = list(out.rglob("*.tmp"))
        print(f"| final | - | {len(done)} | {len(missing)} | {redone} | 0 | {len(left)} |")
        print(f"\nfinal run exit code {code}; good films done with complete outputs: {len(good) - len(missing)}"
              f"/{len(good)}; bad films failed: {len(failed & broken)}/{len(broken)}; films lost: "
              f"{totals['lost'] + len(missing)}; processes left after kills: {totals['left'] + len(left)}; "
              f"temporary files left: {len(temps)}; total {time.time() - began:.0f} s")
        ok = not missing and failed == broken and totals["lost"] == 0 and totals["left"] + len(left) == 0 \
            and not temps
        shutil.rmtree(out, ignore_errors=True)
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
