"""The archive index at scale: index generated sidecars, search them, weigh the index.

    python bench/archive.py                          # 1 000 films x 1 000 shots (about 2.4 GB of JSON)
    python bench/archive.py --films 100 --shots 1000 --keep /tmp/arch

Each generated sidecar is what ``movieid annotate`` writes (schema 1.0, faces engine): per shot
three keyframes, a window of ID images and frames, one to three people with two faces each,
a caption of the faces engine's form or a sentence of a VLM's (with a kitchen now and then),
drawn from 40 cast names and strangers. The table shows the time of ``movieid index``
(``archive.rebuild``), the time of searches through the library and through the command line
(a new process each, so Python's start-up included), and the index's size against the target
(5 % of the sidecars' size plus the caption text).
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from movieid.archive import Query, open_index, rebuild, search  # noqa: E402

NAMES = [f"Member {n:02d}" for n in range(40)]
PLACES = ["kitchen", "garden", "office", "car", "street", "beach", "hallway", "bedroom"]
VERBS = ["talks to", "looks at", "walks past", "argues with", "laughs with", "hands a letter to"]


def make_doc(rng: random.Random, film: int, shots: int) -> dict:
    fps, t, rows = 25.0, 0.0, []
    cast = rng.sample(NAMES, 8)
    for index in range(shots):
        length = rng.uniform(1.0, 6.0)
        start, end = round(t, 4), round(t + length, 4)
        f0, f1 = int(start * fps), int(end * fps)
        people = []
        for number in range(rng.choice((1, 1, 2, 2, 3))):
            known = rng.random() < 0.85
            name = rng.choice(cast) if known else f"Unknown {rng.randint(1, 5)}"
            people.append({"person": number, "name": name, "in_cast": known, "similarity": round(rng.uniform(.9, 1), 4),
                           "sightings": 2, "cluster": rng.randint(0, 12), "cluster_frames": rng.randint(2, 200),
                           "margin": round(rng.uniform(0, .2), 4), "confidence": round(rng.uniform(.3, 1), 4)})
        names = list(dict.fromkeys(p["name"] for p in people))
        keyframes = [{"frame": f0 + k * (f1 - f0) // 4, "time": round(start + k * length / 4, 4)} for k in (1, 2, 3)]
        faces = [{"frame": kf["frame"], "time": kf["time"], "box": [100.0 + 300 * p["person"], 80.0, 260.0, 300.0],
                  "person": p["person"], "name": p["name"], "in_cast": p["in_cast"], "similarity": p["similarity"],
                  "detection_score": 1.2} for p in people for kf in keyframes[:2]]
        if rng.random() < 0.5:
            caption = " and ".join(names) + " on screen"
        else:
            caption = f"{names[0]} {rng.choice(VERBS)} someone in the {rng.choice(PLACES)}."
        rows.append({"index": index, "cut": index, "part": 1, "parts": 1, "start": start, "end": end,
                     "start_frame": f0, "end_frame": max(f1, f0 + 1), "keyframes": keyframes,
                     "window": [{"role": "id", "name": n, "path": f"/cast/{n}/a.jpg"} for n in names if n in cast]
                     + [{"role": "test", **kf} for kf in keyframes],
                     "faces": faces, "people": people, "names": names, "caption": caption,
                     "caption_names": [n for n in names if n in cast]})
        t += length
    return {"schema_version": "1.0", "tool": {"name": "movieid", "version": "0.1.0"}, "created": "2026-01-01T00:00:00+00:00",
            "film": {"path": f"/archive/film{film:04d}.mp4", "size_bytes": 10_000_000, "container": "mp4", "codec": "h264",
                     "width": 1280, "height": 720, "rotation": 0, "fps": fps, "vfr": False, "frame_count": int(t * fps) + 1,
                     "duration": round(t, 4), "start_offset": 0.0, "reader": "decord", "title": None},
            "engine": {"name": "faces"}, "settings": {}, "cast": {"root": "/cast", "face_model": "dlib-19.24", "members": []},
            "unknown_count": 5, "shots": rows}


def generate(folder: Path, films: int, shots: int, seed: int) -> tuple[int, int]:
    """The sidecars; returns (bytes of JSON, bytes of caption text)."""
    rng = random.Random(seed)
    size = text = 0
    for film in range(films):
        doc = make_doc(rng, film, shots)
        path = folder / f"reel{film // 100:02d}" / f"film{film:04d}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(doc, indent=2).encode()
        path.write_bytes(data)
        size += len(data)
        text += sum(len(s["caption"].encode()) for s in doc["shots"])
    return size, text


def timed(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--films", type=int, default=1000)
    parser.add_argument("--shots", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="generate into (and keep) this folder")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="movieid-archive-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        sidecars, captions = generate(folder, args.films, args.shots, args.seed)
        generated = time.perf_counter() - start
        start = time.perf_counter()
        result = rebuild(folder)
        indexing = time.perf_counter() - start
        size = (folder / "index.sqlite").stat().st_size
        queries = {"--person A --person B": Query(persons=("Member 03", "Member 17")),
                   "--text kitchen": Query(text="kitchen"),
                   "--text kitchen --person A": Query(persons=("Member 03",), text="kitchen"),
                   "--person A --film GLOB": Query(persons=("Member 03",), film="reel00/*"),
                   "--person 'Unknown 1' --film": Query(persons=("Unknown 1",), film="reel01/film0101.mp4")}
        rows = [("films x shots", f"{args.films} x {args.shots}", ""),
                ("sidecars", f"{sidecars / 1e6:.0f} MB (+ {captions / 1e6:.1f} MB of caption text)", f"made in {generated:.0f} s"),
                ("movieid index", f"{indexing:.1f} s", f"{result.films} films, {result.shots} shots; target <= 60 s"),
                ("index size", f"{size / 1e6:.0f} MB = {100 * size / sidecars:.1f} % of the sidecars",
                 f"target <= {(0.05 * sidecars + captions) / 1e6:.0f} MB (5 % + captions)")]
        with open_index(folder) as index:
            for label, query in queries.items():
                hits = []
                seconds = timed(lambda: hits.append(len(search(index, folder, query)[0])))
                rows.append((f"search {label}", f"{seconds * 1000:.0f} ms", f"{hits[-1]} hits (library, warm)"))
        cli = [sys.executable, "-m", "movieid", "search", str(folder), "--person", "Member 03", "--person", "Member 17",
               "--json"]
        seconds = timed(lambda: subprocess.run(cli, capture_output=True), repeat=3)   # exit 1: no hits
        rows.append(("movieid search (process)", f"{seconds * 1000:.0f} ms", "Python start-up and imports included"))
        width = max(len(r[0]) for r in rows)
        for name, value, note in rows:
            print(f"{name:<{width}}  {value:<40}  {note}")
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
