"""Pipeline speed and memory on long 720p films, against an ffmpeg decode-only pass.

    python bench/pipeline.py                    # 5 and 20 minute films (built once into bench/out/)
    python bench/pipeline.py --minutes 5 --workers 2

For each film: the wall time of ``ffmpeg -i film -f null -`` (decode only, median of three), the wall time of
``movieid annotate film --cast cast`` (faces engine, default settings), their ratio, and the
peak resident memory of the whole process tree (main process plus face workers), sampled
every 50 ms from /proc. Targets on a 2-core machine: ratio <= 3, peak < 1.5 GB and flat
as the film gets longer.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from movieid.filmmaker import FilmSpec, ShotSpec, make_film  # noqa: E402
from sample_videos.build_sample import (CARD_PLAYERS, T1_SIZE, build_cast, crop,  # noqa: E402
                                        package_photo)


def bench_spec(minutes: float, seed: int = 7) -> FilmSpec:
    """Shots of 2-8 s: close-ups and group shots of real faces, some with nobody, with grain."""
    rng = random.Random(seed)
    t1 = package_photo("insightface", "data", "images", "t1.jpg")
    astronaut = package_photo("skimage", "data", "astronaut.png")
    empties = [package_photo("skimage", "data", n) for n in ("rocket.jpg", "coffee.png", "chelsea.png")]
    framings = [(t1, crop(0, 0, 1280, 720)), (t1, crop(400, 250, 500, 281)), (astronaut, (0.0, 0.0, 1.0, 0.5625))]
    for x, y, s in CARD_PLAYERS.values():
        w = 4 * s
        framings.append((t1, crop(max(0, x - 1.5 * s), max(0, y - 0.6 * s), min(w, T1_SIZE[0] - x + 1.5 * s),
                                  min(w * 9 / 16, T1_SIZE[1] - y + 0.6 * s))))
    shots, frames, total = [], 0, int(minutes * 60 * 25)
    while frames < total:
        n = min(rng.randint(50, 200), total - frames)
        if rng.random() < 0.15:
            image, region = rng.choice(empties), None
        else:
            image, region = rng.choice(framings)
        shots.append(ShotSpec(image, n, rng.choice(["static", "pan_left", "pan_right", "zoom_in", "zoom_out"]),
                              mirror=rng.random() < 0.3, tint=rng.uniform(-0.4, 0.4), grain=6, crop=region))
        frames += n
    return FilmSpec(shots, width=1280, height=720, fps=25, crf=21, preset="veryfast")


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as fh:
                total += next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))
            with open(f"/proc/{p}/task/{p}/children") as fh:
                todo += [int(c) for c in fh.read().split()]
        except (OSError, StopIteration):
            continue
    return total


def timed(cmd: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr.read()}")
    return elapsed, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[5, 20])
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cast = args.out / "cast"
    if not cast.is_dir():
        build_cast(package_photo("insightface", "data", "images", "t1.jpg"),
                   package_photo("skimage", "data", "astronaut.png"), cast)
    movieid = [sys.executable, "-m", "movieid"]
    rows = []
    for minutes in args.minutes:
        film = args.out / f"bench_{minutes:g}min_720p.mp4"
        if not film.is_file():
            print(f"building {film.name} ...", file=sys.stderr)
            make_film(bench_spec(minutes), film)
        # The decode-only pass is short and noisy on a shared machine: the median of three.
        decode = statistics.median(timed(["ffmpeg", "-nostdin", "-v", "error", "-i", str(film), "-f", "null", "-"])[0]
                                   for _ in range(3))
        with tempfile.TemporaryDirectory() as tmp:
            env_cache = ["--cache-dir", str(args.out / "cache")]
            annotate, peak = timed([*movieid, "annotate", str(film), "--cast", str(cast), "-o", tmp, "-q",
                                    "--face-backend", "dlib", "--workers", str(args.workers), *env_cache])
        rows.append((film.name, minutes, decode, annotate, peak))
    print(f"\nmachine: {os.cpu_count()} cores; workers: {args.workers or os.cpu_count()}")
    print("| film | minutes | decode-only s | annotate s | ratio | peak RSS (tree) MB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, minutes, decode, annotate, peak in rows:
        print(f"| {name} | {minutes:g} | {decode:.1f} | {annotate:.1f} | {annotate / decode:.2f}x | {peak / 2**20:.0f} |")


if __name__ == "__main__":
    main()
