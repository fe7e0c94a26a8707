"""Build the sample film and its cast from photos that ship inside installed packages.

    python sample_videos/build_sample.py          # writes sample_videos/sample.mp4 and sample_videos/cast/

Photos: the group portrait ``t1.jpg`` inside the insightface wheel (six people around a
card table) and scikit-image's astronaut (Eileen Collins) and rocket. The cast is five of
the six card players plus the astronaut; the sixth player (Monica) is left out on purpose,
so the film has a person the cast does not know. Cast photos are crops of the portrait;
the film re-frames the same portrait with camera moves, mirroring and colour changes.
The build is deterministic: the same packages give the same film.
"""
from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from movieid.filmmaker import FilmSpec, ShotSpec, make_film  # noqa: E402

# Faces in t1.jpg (1280x886), left to right, as (x, y, size) in pixels.
CARD_PLAYERS = {"Rachel": (65, 284, 105), "Monica": (275, 179, 88), "Ross": (452, 300, 126),
                "Chandler": (734, 365, 104), "Joey": (883, 89, 105), "Phoebe": (1114, 284, 104)}
NOT_IN_CAST = "Monica"
T1_SIZE = (1280, 886)


def package_photo(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise SystemExit(f"build_sample: the {package} package is needed (pip install {package})")
    path = Path(spec.origin).parent.joinpath(*parts)
    if not path.is_file():
        raise SystemExit(f"build_sample: {path} is missing from the installed {package} package")
    return path


def crop(x: float, y: float, w: float, h: float, size=T1_SIZE) -> tuple[float, float, float, float]:
    """A pixel rectangle as the fractions ShotSpec.crop takes."""
    return (x / size[0], y / size[1], w / size[0], h / size[1])


def build_cast(t1: Path, astronaut: Path, cast_dir: Path) -> None:
    from PIL import Image

    if cast_dir.exists():
        shutil.rmtree(cast_dir)
    group = Image.open(t1).convert("RGB")
    for name, (x, y, s) in CARD_PLAYERS.items():
        if name == NOT_IN_CAST:
            continue
        box = (max(0, x - 0.6 * s), max(0, y - 0.7 * s), min(T1_SIZE[0], x + 1.6 * s), min(T1_SIZE[1], y + 1.9 * s))
        (cast_dir / name).mkdir(parents=True)
        group.crop(tuple(round(v) for v in box)).save(cast_dir / name / f"{name.lower()}.jpg", quality=92)
    (cast_dir / "Eileen Collins").mkdir(parents=True)
    Image.open(astronaut).convert("RGB").crop((100, 0, 380, 300)).save(
        cast_dir / "Eileen Collins" / "eileen_collins.jpg", quality=92)


def film_spec(t1: Path, astronaut: Path, rocket: Path, coffee: Path) -> FilmSpec:
    shots = [
        ShotSpec(t1, 100, "zoom_in", ("Rachel", "Monica", "Ross", "Chandler", "Joey", "Phoebe"),
                 crop=crop(0, 0, 1280, 720)),
        ShotSpec(t1, 60, "static", ("Rachel",), crop=crop(0, 250, 270, 152)),
        ShotSpec(t1, 75, "pan_right", ("Ross", "Chandler"), crop=crop(400, 250, 500, 281)),
        ShotSpec(astronaut, 75, "zoom_out", ("Eileen Collins",), crop=(0.0, 0.0, 1.0, 0.5625)),
        ShotSpec(rocket, 50, "static", ()),
        ShotSpec(t1, 60, "zoom_in", ("Phoebe",), mirror=True, tint=0.5, crop=crop(1000, 258, 280, 157)),
        ShotSpec(t1, 60, "pan_left", ("Joey",), tint=-0.4, crop=crop(820, 74, 240, 135)),
        ShotSpec(coffee, 3, "static", ()),                                   # a flash cut
        ShotSpec(t1, 50, "static", (NOT_IN_CAST,), crop=crop(220, 167, 200, 112)),
        ShotSpec(t1, 300, "pan_left", ("Rachel", "Monica", "Ross", "Chandler", "Joey", "Phoebe"),
                 crop=crop(0, 0, 1280, 720)),                               # a 12 s take: two parts
    ]
    return FilmSpec(shots, width=960, height=540, fps=25, crf=20)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder for sample.mp4 and cast/")
    args = parser.parse_args(argv)
    t1 = package_photo("insightface", "data", "images", "t1.jpg")
    astronaut = package_photo("skimage", "data", "astronaut.png")
    rocket = package_photo("skimage", "data", "rocket.jpg")
    coffee = package_photo("skimage", "data", "coffee.png")
    args.out.mkdir(parents=True, exist_ok=True)
    build_cast(t1, astronaut, args.out / "cast")
    film = make_film(film_spec(t1, astronaut, rocket, coffee), args.out / "sample.mp4")
    print(f"built {film} and {args.out / 'cast'}")


if __name__ == "__main__":
    main()
