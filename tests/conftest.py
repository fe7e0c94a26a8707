"""Shared fixtures: small real films built once per test session, from photos inside installed
packages (they run anywhere) or from the real face photos of ../shared/fixtures (identity tests)."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from movieid.filmmaker import FilmSpec, ShotSpec, make_film
from sample_videos.build_sample import build_cast, crop, package_photo

# A suite started in the background by a shell without job control (``cmd &`` in a script,
# nohup) inherits Ctrl-C ignored, and so would every command line it starts: the Ctrl-C tests
# would then test nothing. They are about a terminal's Ctrl-C, so it is handled here as there.
signal.signal(signal.SIGINT, signal.default_int_handler)

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
    for photo, frames, motion, box, mirror, tint, names in MULTISHOT:
        image = cat if photo == "@chelsea" else faces_dir / "probes" / photo
        shots.append(ShotSpec(image, frames, motion, tuple(names), mirror=mirror, tint=tint, crop=box))
        parts = max(1, -(-frames // int(MULTISHOT_MAX_SHOT_LEN * 25)))
        expected += [names] * parts
    spec = FilmSpec(shots, width=640, height=360, fps=25)
    return make_film(spec, films / "multishot.mp4"), spec, expected


# The card-game film: photos inside installed packages (insightface's t1.jpg, six card players,
# and scikit-image's astronaut and coffee), so it builds anywhere. Monica is not in the cast.
CARDGAME = [
    # (photo, frames, motion, crop in t1 pixels or None, mirror, tint, expected cast names left to right)
    ("t1", 40, "static", (0, 250, 270, 152), False, 0.0, ["Rachel"]),
    ("t1", 50, "pan_right", (400, 250, 500, 281), False, 0.0, ["Ross", "Chandler"]),
    ("astronaut", 40, "zoom_out", None, False, 0.0, ["Eileen Collins"]),
    ("coffee", 3, "static", None, False, 0.0, []),                            # a flash cut
    ("t1", 40, "static", (220, 167, 200, 112), False, 0.0, []),               # Monica, not in the cast
    ("t1", 40, "static", (820, 74, 240, 135), False, -0.4, ["Joey"]),
    ("t1", 120, "zoom_in", (1000, 258, 280, 157), True, 0.5, ["Phoebe"]),     # 4.8 s: two parts
]
CARDGAME_MAX_SHOT_LEN = 3.0


@pytest.fixture(scope="session")
def package_photos() -> dict[str, Path]:
    return {"t1": package_photo("insightface", "data", "images", "t1.jpg"),
            "astronaut": package_photo("skimage", "data", "astronaut.png"),
            "coffee": package_photo("skimage", "data", "coffee.png")}


@pytest.fixture(scope="session")
def package_cast(package_photos, tmp_path_factory) -> Path:
    """Five of the six card players (not Monica) and the astronaut, cropped from the photos."""
    cast = tmp_path_factory.mktemp("package_cast") / "cast"
    build_cast(package_photos["t1"], package_photos["astronaut"], cast)
    return cast


@pytest.fixture(scope="session")
def cardgame(films, package_photos) -> tuple[Path, FilmSpec, list[list[str]]]:
    """(film path, its spec, expected cast names per detected shot part)."""
    shots, expected = [], []
    for photo, frames, motion, box, mirror, tint, names in CARDGAME:
        frame = crop(*box) if box else ((0.0, 0.0, 1.0, 0.5625) if photo == "astronaut" else None)
        shots.append(ShotSpec(package_photos[photo], frames, motion, tuple(names), mirror=mirror, tint=tint,
                              crop=frame))
        expected += [names] * max(1, -(-frames // int(CARDGAME_MAX_SHOT_LEN * 25)))
    spec = FilmSpec(shots, width=640, height=360, fps=25)
    return make_film(spec, films / "cardgame.mp4"), spec, expected


def pair_photo(package_photos, path):
    """Ross and Chandler side by side: a photo with two faces."""
    from PIL import Image

    with Image.open(package_photos["t1"]) as t1:
        t1.convert("RGB").crop((400, 250, 900, 531)).save(path)
    return path


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

@pytest.fixture(scope="session")
def sample(films) -> tuple[Path, Path, FilmSpec]:
    """The bundled sample film and its cast, built as build_sample.py builds them: (film, cast, spec)."""
    from sample_videos.build_sample import film_spec

    photos = (package_photo("insightface", "data", "images", "t1.jpg"), package_photo("skimage", "data", "astronaut.png"),
              package_photo("skimage", "data", "rocket.jpg"), package_photo("skimage", "data", "coffee.png"))
    out = films / "sample"
    build_cast(photos[0], photos[1], out / "cast")
    spec = film_spec(*photos)
    return make_film(spec, out / "sample.mp4"), out / "cast", spec


def dlib_config(tmp_path: Path):
    """The offline configuration the tests annotate with: dlib faces, one worker, a private cache."""
    from movieid.config import Config, FaceConfig

    return Config(faces=FaceConfig(backend="dlib"), workers=1, cache_dir=str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def sample_doc(sample, tmp_path_factory) -> dict:
    """The sample film annotated with its cast (dlib, offline engine): the JSON document."""
    from movieid.annotation import document
    from movieid.pipeline import annotate

    film, cast, _ = sample
    return document(annotate(film, cast, dlib_config(tmp_path_factory.mktemp("sample-doc"))))


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
    t1 = package_photo("insightface", "data", "images", "t1.jpg")
    rocket = package_photo("skimage", "data", "rocket.jpg")
    shots = [ShotSpec(t1, 75, "static", ("Rachel",), crop=crop(0, 250, 270, 152)),
             ShotSpec(t1, 75, "pan_right", ("Ross", "Chandler"), crop=crop(400, 250, 500, 281)),
             ShotSpec(rocket, 75, "static", ()),
             ShotSpec(t1, 75, "static", ("Joey",), crop=crop(820, 74, 240, 135))]
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


# ----------------------------------------------------------------------------- the fault suites' films

@pytest.fixture(scope="module")
def film(cardgame, films) -> Path:
    """The card-game film's first shot (Rachel, 40 frames): seconds to annotate."""
    path = films / "rachel.mp4"
    if not path.exists():
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(cardgame[0]), "-frames:v", "40", "-c", "copy",
                        str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def archive(film, tmp_path_factory) -> Path:
    """Three films in a folder, for batches."""
    root = tmp_path_factory.mktemp("faults_archive")
    for name in ("a", "b", "c"):
        (root / name).mkdir()
        shutil.copy(film, root / name / "film.mp4")
    return root
