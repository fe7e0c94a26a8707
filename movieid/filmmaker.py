"""Build small films from still photos with ffmpeg: the sample film, test films, benchmarks.

Each shot is one photo filmed with a simple camera move (static, pan, zoom), optionally
mirrored, tinted or grainy; shots are encoded separately and joined without re-encoding,
so every cut lands on a known frame. ``ShotSpec.people`` records who is in the photo
(left to right), which is what tests compare the pipeline's output against.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

Motion = Literal["static", "pan_left", "pan_right", "zoom_in", "zoom_out"]


@dataclass(frozen=True)
class ShotSpec:
    image: Path
    frames: int
    motion: Motion = "static"
    people: tuple[str, ...] = ()     # who is visible, left to right (for tests and docs)
    mirror: bool = False
    tint: float = 0.0                # -1..1: cooler .. warmer colour balance
    grain: int = 0                   # film grain strength (0: none); makes decoding realistic
    crop: tuple[float, float, float, float] | None = None  # (x, y, w, h) of the photo, fractions


@dataclass(frozen=True)
class FilmSpec:
    shots: Sequence[ShotSpec]
    width: int = 640
    height: int = 360
    fps: int = 25
    crf: int = 23
    preset: str = "veryfast"
    keyint: int = 250
    extra_output_args: tuple[str, ...] = field(default_factory=tuple)

    def cut_frames(self) -> list[int]:
        """Frame index where each shot starts."""
        starts, total = [], 0
        for shot in self.shots:
            starts.append(total)
            total += shot.frames
        return starts


def _shot_filter(shot: ShotSpec, width: int, height: int, fps: int) -> str:
    duration = shot.frames / fps
    margin = 1.0 if shot.motion == "static" else 1.25
    steps = []
    if shot.crop:
        x, y, w, h = shot.crop
        steps.append(f"crop=iw*{w}:ih*{h}:iw*{x}:ih*{y}")
    cover_w, cover_h = int(width * margin) // 2 * 2, int(height * margin) // 2 * 2
    steps.append(f"scale={cover_w}:{cover_h}:force_original_aspect_ratio=increase,setsar=1")
    if shot.mirror:
        steps.append("hflip")
    progress = f"(t/{duration:.6f})"
    if shot.motion == "pan_left":
        steps.append(f"crop={width}:{height}:x='(iw-{width})*(1-{progress})':y='(ih-{height})/2'")
    elif shot.motion == "pan_right":
        steps.append(f"crop={width}:{height}:x='(iw-{width})*{progress}':y='(ih-{height})/2'")
    elif shot.motion in ("zoom_in", "zoom_out"):
        zoom = f"(1+0.3*{progress})" if shot.motion == "zoom_in" else f"(1.3-0.3*{progress})"
        steps.append(f"scale=w='iw*{zoom}':h='ih*{zoom}':eval=frame")
        steps.append(f"crop={width}:{height}")
    else:
        steps.append(f"crop={width}:{height}")
    if shot.tint:
        steps.append(f"colorbalance=rm={0.15 * shot.tint:.3f}:bm={-0.15 * shot.tint:.3f}")
    if shot.grain:
        steps.append(f"noise=alls={int(shot.grain)}:allf=t")
    steps.append("format=yuv420p")
    return ",".join(steps)


def make_film(spec: FilmSpec, out: str | Path, jobs: int = 1) -> Path:
    """Render ``spec`` to ``out`` (H.264 in the container the suffix names); ``jobs`` shots are
    encoded at once (each by its own ffmpeg), then joined without re-encoding."""
    out = Path(out)
    if not shutil.which("ffmpeg"):
        raise RuntimeError("ffmpeg is not installed")
    with tempfile.TemporaryDirectory(prefix="movieid-film-") as tmp:
        parts = [Path(tmp) / f"shot{i:04d}.mp4" for i in range(len(spec.shots))]
        cmds = [["ffmpeg", "-nostdin", "-v", "error", "-y", "-loop", "1", "-framerate", str(spec.fps),
                 "-i", str(shot.image), "-vf", _shot_filter(shot, spec.width, spec.height, spec.fps),
                 "-frames:v", str(shot.frames), "-r", str(spec.fps), "-c:v", "libx264",
                 "-preset", spec.preset, "-crf", str(spec.crf), "-g", str(spec.keyint),
                 "-bf", "2", "-video_track_timescale", str(spec.fps * 512), str(part)]
                for shot, part in zip(spec.shots, parts)]
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            list(pool.map(lambda cmd: subprocess.run(cmd, check=True), cmds))
        listing = Path(tmp) / "parts.txt"
        listing.write_text("".join(f"file '{p}'\n" for p in parts))
        tmp_out = Path(tmp) / f"film{out.suffix or '.mp4'}"
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "concat", "-safe", "0",
                        "-i", str(listing), "-c", "copy", *spec.extra_output_args, str(tmp_out)],
                       check=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(tmp_out), out)
    return out
