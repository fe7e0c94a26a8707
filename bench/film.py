"""A film end to end with the IDA-VLM engine: does captioning overlap the analysis?

    python bench/film.py                                     # one CUDA GPU: 10-minute 720p film, full-size model
    python bench/film.py --film F.mp4 --cast cast/ --json r.json   # a film and cast built elsewhere
    python bench/film.py --tiny --minutes 0.3 --device cpu   # CPU smoke run of the same code
    python bench/film.py --build-only                        # film, cast and cache only (to carry to a GPU)

Builds once (into --out, with ``movieid.filmmaker``) a 1280x720 film of bench/pipeline.py's
shots (the sample film's people: close-ups, group shots, some with nobody) and their cast. The
model is IDA-VLM at full size with random bf16 weights drawn on the GPU (no checkpoint; the
byte-level stand-in tokenizer of bench/ida_vlm.py), handed to the engine already built; it is
built and warmed up on a few windows before anything is timed. Then, with ``--workers`` face
processes:

(1) analysis alone: face backend and cast loaded, ``pipeline.analyse`` (what annotate does before captions);
(2) captioning alone: ``pipeline.caption`` of that analysis;
(3) the whole ``pipeline.annotate``, captions overlapping the analysis.

Target: (3) <= 1.2 x max((1), (2)). Also printed: the seconds (2) and (3) spent decoding test frames
again (``KeptFrames.read``: (2) reads them from the film, (3) gets them from its decoding pass), in
all test-frame work (``pipeline._test_frames``: that and YUV to RGB) and in the model
(``engine.answer``), when (3) gave its first caption and when its analysis ended, and how many
of its captions equal (2)'s (batches differ; on a GPU in bf16 a different batch may change the
last bits, and so a greedy answer).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

RUNTIME_MODULES = ("dlib", "face_recognition_models", "decord", "ffmpeg", "cv2", "scenedetect", "onnxruntime", "PIL",
                   "tqdm", "tiktoken", "safetensors")
WARMUP_WINDOWS = 8
TARGET = 1.2


def environment() -> dict:
    """The ffmpeg binaries and Python modules the pipeline runs on; exits naming what is missing."""
    found = {tool: shutil.which(tool) for tool in ("ffmpeg", "ffprobe")}
    missing = [f"{tool} (not on PATH)" for tool, path in found.items() if path is None]
    for module in RUNTIME_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            missing.append(f"Python module {module} ({exc})")
    if missing:
        sys.exit("bench/film.py: missing: " + "; ".join(missing))
    version = subprocess.run([found["ffmpeg"], "-version"], capture_output=True, text=True).stdout.splitlines()[0]
    print(f"ffmpeg: {found['ffmpeg']} ({version})\nffprobe: {found['ffprobe']}", flush=True)
    return {**found, "ffmpeg_version": version}


def film_and_cast(args) -> tuple[Path, Path]:
    """``--film``/``--cast`` as given, else bench/pipeline.py's film and the sample cast, built once
    (from photos inside installed packages: insightface, scikit-image)."""
    cast = args.cast or args.out / "cast"
    if args.cast is None and not cast.is_dir():
        from sample_videos.build_sample import build_cast, package_photo

        build_cast(package_photo("insightface", "data", "images", "t1.jpg"),
                   package_photo("skimage", "data", "astronaut.png"), cast)
    film = args.film or args.out / f"bench_{args.minutes:g}min_720p.mp4"
    if args.film is None and not film.is_file():
        from pipeline import bench_spec

        from movieid.filmmaker import make_film

        print(f"building {film} ...", file=sys.stderr, flush=True)
        make_film(bench_spec(args.minutes), film)
    return film, cast


class Timeline:
    """A progress callback that notes when each step reported (seconds since ``start``)."""

    def __init__(self):
        self.start = time.perf_counter()
        self.events: list[tuple[float, str, int, int]] = []

    def __call__(self, step: str, done: int, total: int) -> None:
        self.events.append((time.perf_counter() - self.start, step, done, total))

    def first(self, step: str) -> float | None:
        return next((t for t, s, _, _ in self.events if s == step), None)

    def last(self, step: str) -> float | None:
        return next((t for t, s, _, _ in reversed(self.events) if s == step), None)

    def done_by(self, step: str, when: float) -> int:
        return max((d for t, s, d, _ in self.events if s == step and t <= when), default=0)


def clocked(fn, label: str, spent: dict[str, float]):
    """``fn`` adding its seconds to ``spent[label]`` (calls from any thread)."""
    def timed(*args, **kwargs):
        begin = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0.0) + time.perf_counter() - begin
    return timed


def parts(spent: dict[str, float]) -> str:
    return ", ".join(f"{label} {seconds:.1f} s" for label, seconds in spent.items()) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the film built (default 10)")
    parser.add_argument("--film", type=Path, help="a film to use instead (e.g. built elsewhere)")
    parser.add_argument("--cast", type=Path, help="its cast folder (default: the sample cast, built once)")
    parser.add_argument("--out", type=Path, default=HERE / "out", help="where the film and cast are built")
    parser.add_argument("--cache-dir", type=Path, help="movieid's cache (cast embeddings, dlib's ONNX network); "
                                                       "default $MOVIEID_CACHE_DIR, else OUT/cache")
    default_workers = max(1, (os.cpu_count() or 2) - 2)
    parser.add_argument("--workers", type=int, default=default_workers,
                        help=f"face processes (default: cores minus two, here {default_workers})")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-size", type=int, help="windows a batch (default: the engine sizes them)")
    parser.add_argument("--new-tokens", type=int, default=64, help="longest caption in tokens (annotate's default)")
    parser.add_argument("--tiny", action="store_true", help="the tiny test architecture (CPU smoke run)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--build-only", action="store_true",
                        help="build the film and cast and fill the cache (no GPU), to carry them elsewhere")
    args = parser.parse_args()

    tools = environment()
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.cache_dir or Path(os.environ.get("MOVIEID_CACHE_DIR") or args.out / "cache")
    os.environ["MOVIEID_CACHE_DIR"] = str(cache)        # the face workers' dlib ONNX network lives there too
    film_path, cast_dir = film_and_cast(args)

    from movieid.config import Config, EngineConfig, FaceConfig
    from movieid.faces import load_backend
    from movieid.pipeline import cast_for

    faces_only = Config(faces=FaceConfig(backend="dlib"), workers=args.workers, cache_dir=str(cache))
    backend = load_backend("dlib")                      # converts dlib's network to ONNX once, into the cache
    cast_for(cast_dir, backend, faces_only)             # fills the embedding cache: not timed
    onnx = getattr(backend, "_onnx", None) is not None
    if args.build_only:
        for path in (film_path, cast_dir, cache):
            size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) if path.is_dir() \
                else path.stat().st_size
            print(f"{path}: {size / 2**20:.1f} MiB")
        print(f"dlib descriptors: {'onnxruntime' if onnx else 'dlib (no onnx/onnxruntime)'}")
        return

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("bench/film.py needs a CUDA GPU (or --tiny --device cpu for a smoke run)")
    if not args.tiny and not args.device.startswith("cuda"):
        sys.exit("the full-size model needs a CUDA GPU (--tiny for the CPU)")

    from train import build_model

    from movieid.engines.ida_vlm import IdaVlmEngine
    from movieid.face_stage import face_pool
    from movieid import pipeline
    from movieid.pipeline import analyse, annotate, caption
    from movieid.scan import KeptFrames
    from movieid.video import probe

    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    config = faces_only.replace(engine=EngineConfig(name="ida-vlm", model="random weights (bench/film.py)",
                                                    device=args.device, batch_size=args.batch_size,
                                                    max_new_tokens=args.new_tokens))
    film = probe(film_path)
    machine = (f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or 'CPU'}, "
               f"{os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}")
    print(f"machine: {machine}\nfilm: {film.path} ({film.width}x{film.height}, {film.duration:.0f} s, reader "
          f"{film.reader}); cast: {cast_dir}\nface workers: {args.workers}; dlib descriptors: "
          f"{'onnxruntime' if onnx else 'dlib (no onnx/onnxruntime: about 15x slower)'}", flush=True)

    start = time.perf_counter()
    model = build_model(args.tiny, device).eval()
    engine = IdaVlmEngine(config.engine, model=model)
    sync()
    print(f"model: {'tiny' if args.tiny else 'full-size'} {model.dtype} on {model.device}, built in "
          f"{time.perf_counter() - start:.1f} s", flush=True)

    def timed(fn):
        sync()
        spent.clear()
        begin = time.perf_counter()
        value = fn()
        sync()
        return time.perf_counter() - begin, value

    # Where the threads' time goes: decoding test frames again (KeptFrames.read), all test-frame
    # work (pipeline._test_frames, in the reader thread) and the model (engine.answer).
    spent: dict[str, float] = {}
    for owner, name in ((KeptFrames, "read"), (pipeline, "_test_frames"), (IdaVlmEngine, "answer")):
        label = f"{getattr(owner, '__name__', 'pipeline').split('.')[-1]}.{name}"
        setattr(owner, name, clocked(getattr(owner, name), label, spent))

    def analysis_alone():
        backend = load_backend("dlib")
        cast = cast_for(cast_dir, backend, config)
        with face_pool(config, backend) as pool:
            return analyse(film, cast, backend, config, pool)

    analysis_s, analysis = timed(analysis_alone)
    shots = len(analysis.shots)
    print(f"(1) analysis alone: {analysis_s:.1f} s, {shots} shots", flush=True)
    few = min(WARMUP_WINDOWS, shots)
    timed(lambda: caption(dataclasses.replace(analysis, shots=analysis.shots[:few], windows=analysis.windows[:few]),
                          engine))
    caption_s, alone = timed(lambda: caption(analysis, engine))
    caption_parts = dict(spent)
    print(f"(2) captioning alone: {caption_s:.1f} s ({parts(caption_parts)})", flush=True)
    timeline = Timeline()
    whole_s, whole = timed(lambda: annotate(film, cast_dir, config, timeline, engine=engine))
    whole_parts = dict(spent)
    print(f"(3) annotate, overlapped: {whole_s:.1f} s ({parts(whole_parts)})", flush=True)

    analysis_end = timeline.last("faces") or whole_s
    same = sum(a.caption == b.caption for a, b in zip(alone.shots, whole.shots))
    ratio = whole_s / max(analysis_s, caption_s)
    rows = [("(1) analysis alone", analysis_s, shots), ("(2) captioning alone", caption_s, shots),
            ("(3) annotate, captions overlapping the analysis", whole_s, len(whole.shots))]
    print("\n| run | seconds | shots | shots/s |\n| --- | ---: | ---: | ---: |")
    for name, seconds, count in rows:
        print(f"| {name} | {seconds:.1f} | {count} | {count / seconds:.2f} |")
    print(f"\n(3) / max((1), (2)) = {ratio:.2f} (target <= {TARGET}: {'met' if ratio <= TARGET else 'NOT met'}); "
          f"(1) + (2) = {analysis_s + caption_s:.1f} s")
    first = timeline.first("captions")
    print(f"(3): first caption at {first if first is None else round(first, 1)} s, analysis done at "
          f"{analysis_end:.1f} s with {timeline.done_by('captions', analysis_end)} of {shots} shots captioned; "
          f"captions equal to (2)'s: {same} of {shots}")
    if args.json:
        args.json.write_text(json.dumps({
            "machine": machine, "tools": tools, "film": str(film.path), "film_seconds": film.duration,
            "size": [film.width, film.height], "cast": str(cast_dir), "workers": args.workers, "onnx_descriptors": onnx,
            "model": "tiny" if args.tiny else "full-size", "dtype": str(model.dtype), "device": str(model.device),
            "batch_size": args.batch_size or "auto", "new_tokens": args.new_tokens, "shots": shots,
            "analysis_s": analysis_s, "caption_s": caption_s, "annotate_s": whole_s, "ratio": ratio,
            "target": TARGET, "first_caption_s": first, "analysis_done_s": analysis_end,
            "captioned_by_analysis_end": timeline.done_by("captions", analysis_end), "same_captions": same,
            "caption_parts_s": caption_parts, "annotate_parts_s": whole_parts,
            "events": timeline.events}, indent=2))


if __name__ == "__main__":
    main()
