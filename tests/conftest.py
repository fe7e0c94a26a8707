"""Shared fixtures: real face photos, and small real films built once per test session."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from movieid.filmmaker import FilmSpec, ShotSpec, make_film

REPO = Path(__file__).resolve().parent.parent
FACES = (REPO / ".." / "shared" / "fixtures" / "faces").resolve()


def _need_ffmpeg() -> None:
    if not (shutil.which("ffmpeg") and shutil.which("ffprobe")):
        pytest.skip("ffmpeg/ffprobe are not installed (Debian: apt-get install ffmpeg)")


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """../shared/fixtures/faces: cast/<Name>/*.jpg, probes/*.jpg, labels.json."""
    if not (FACES / "labels.json").is_file():
        pytest.skip(f"real face photos not found at {FACES} (the shared fixtures are not checked out here)")
    return FACES


@pytest.fixture(scope="session")
def cast_dir(faces_dir) -> Path:
    return faces_dir / "cast"


@pytest.fixture(scope="session")
def probe_labels(faces_dir) -> dict:
    return json.loads((faces_dir / "labels.json").read_text())["probes"]


@pytest.fixture(scope="session")
def films(tmp_path_factory) -> Path:
    _need_ffmpeg()
    return tmp_path_factory.mktemp("films")


def _still(path: Path, array) -> Path:
    from PIL import Image

    Image.fromarray(array).save(path)
    return path


# The multi-shot test film: real face photos, camera moves, a flash cut, a shot with only
# people outside the cast, one with nobody, and a long shot that gets split. Crops are
# fractions (x, y, w, h) of the photo, chosen so the faces stay in the 16:9 frame.
MULTISHOT = [
    # (photo, frames, motion, crop, mirror, tint, expected cast names left to right)
    ("obama1.jpg", 40, "zoom_in", None, False, 0.0, ["Barack Obama"]),
    ("biden2.jpg", 40, "pan_left", (0.0, 0.125, 1.0, 0.5625), False, 0.0, ["Joe Biden"]),
    ("two_people.jpg", 50, "pan_right", None, False, 0.0, ["Barack Obama", "Joe Biden"]),
    ("@chelsea", 3, "static", None, False, 0.0, []),                      # a flash cut: a cat
    ("kit_with_rose.jpg", 40, "static", (0.0, 0.05, 1.0, 0.40), False, 0.4, ["Rose Leslie", "Kit Harington"]),
    ("rose2.jpg", 35, "zoom_out", (0.0, 0.15, 1.0, 0.37), True, 0.0, ["Rose Leslie"]),
    ("obama_and_biden.jpg", 45, "static", (0.25, 0.273, 0.75, 0.591), False, 0.0, ["Joe Biden", "Barack Obama"]),
    ("johnsnow_test1.jpg", 120, "pan_left", (0.0, 0.08, 1.0, 0.375), False, -0.3, ["Kit Harington"]),
]
MULTISHOT_MAX_SHOT_LEN = 3.0   # the last shot (4.8 s) is split into two parts


@pytest.fixture(scope="session")
def multishot(films, faces_dir) -> tuple[Path, FilmSpec, list[list[str]]]:
    """(film path, its spec, expected cast names per detected shot part)."""
    import skimage.data

    cat = _still(films / "chelsea.png", skimage.data.chelsea())
    shots, expected = [], []
    for photo, frames, motion, crop, mirror, tint, names in MULTISHOT:
        image = cat if photo == "@chelsea" else faces_dir / "probes" / photo
        shots.append(ShotSpec(image, frames, motion, tuple(names), mirror=mirror, tint=tint, crop=crop))
        parts = max(1, -(-frames // int(MULTISHOT_MAX_SHOT_LEN * 25)))
        expected += [names] * parts
    spec = FilmSpec(shots, width=640, height=360, fps=25)
    return make_film(spec, films / "multishot.mp4"), spec, expected


def lavfi_film(path: Path, *args: str, duration: float = 2.0, size: str = "320x240", rate: int = 25,
               source: str = "testsrc2") -> Path:
    """A short synthetic video made by ffmpeg; extra args go before the output path."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi",
           "-i", f"{source}=size={size}:rate={rate}:duration={duration}", *args, str(path)]
    subprocess.run(cmd, check=True)
    return path


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real ``movieid`` command line in a subprocess."""
    return subprocess.run([sys.executable, "-m", "movieid", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or REPO, env=env, timeout=600)


# ----------------------------------------------------------------------------- the sample film, speech

def build_sample_module():
    """``sample_videos/build_sample.py`` (photos inside installed packages) as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_sample", REPO / "sample_videos" / "build_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def sample(films) -> tuple[Path, Path, FilmSpec]:
    """The bundled sample film and its cast, built as build_sample.py builds them: (film, cast, spec)."""
    bs = build_sample_module()
    photos = (bs.package_photo("insightface", "data", "images", "t1.jpg"),
              bs.package_photo("skimage", "data", "astronaut.png"),
              bs.package_photo("skimage", "data", "rocket.jpg"), bs.package_photo("skimage", "data", "coffee.png"))
    out = films / "sample"
    bs.build_cast(photos[0], photos[1], out / "cast")
    spec = bs.film_spec(*photos)
    return make_film(spec, out / "sample.mp4"), out / "cast", spec


@pytest.fixture(scope="session")
def sample_doc(sample, tmp_path_factory) -> dict:
    """The sample film annotated with its cast (dlib, offline engine): the JSON document."""
    from movieid.pipeline import AnnotateOptions, annotate

    film, cast, _ = sample
    options = AnnotateOptions(face_backend="dlib", workers=1, cache_dir=str(tmp_path_factory.mktemp("cache")))
    return annotate(film, cast, options, progress=False).to_json()


# Speech the film below carries: (start in seconds, sentence), spoken by espeak-ng.
SPEECH = [(0.3, "Hello there. I think we should play another round of cards tonight."),
          (6.0, "Joey, put the cards down. We are leaving now.")]
SPEECH_FILM_SECONDS = 12.0


@pytest.fixture(scope="session")
def speech_film(films) -> tuple[Path, list[tuple[float, float]]]:
    """A 12 s film of four 3 s shots with real speech (espeak-ng) at known times:
    (film, [(start, end) of each sentence])."""
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    bs = build_sample_module()
    t1 = bs.package_photo("insightface", "data", "images", "t1.jpg")
    rocket = bs.package_photo("skimage", "data", "rocket.jpg")
    shots = [ShotSpec(t1, 75, "static", ("Rachel",), crop=bs.crop(0, 250, 270, 152)),
             ShotSpec(t1, 75, "pan_right", ("Ross", "Chandler"), crop=bs.crop(400, 250, 500, 281)),
             ShotSpec(rocket, 75, "static", ()),
             ShotSpec(t1, 75, "static", ("Joey",), crop=bs.crop(820, 74, 240, 135))]
    folder = films / "speech"
    video = make_film(FilmSpec(shots, width=640, height=360, fps=25), folder / "video.mp4")
    inputs, filters, truth = [], [], []
    for i, (start, text) in enumerate(SPEECH):
        wav = folder / f"line{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
        seconds = float(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                                        "csv=p=0", str(wav)], check=True, capture_output=True, text=True).stdout)
        truth.append((start, start + seconds))
        inputs += ["-i", str(wav)]
        filters.append(f"[{i + 1}:a]adelay={int(start * 1000)}:all=1[a{i}]")
    mix = ";".join(filters) + ";" + "".join(f"[a{i}]" for i in range(len(SPEECH))) + \
        f"amix=inputs={len(SPEECH)}:normalize=0,apad,atrim=0:{SPEECH_FILM_SECONDS}[out]"
    film = folder / "speech.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(video), *inputs, "-filter_complex", mix,
                    "-map", "0:v", "-map", "[out]", "-c:v", "copy", "-c:a", "aac", "-ar", "44100", str(film)],
                   check=True)
    return film, truth
