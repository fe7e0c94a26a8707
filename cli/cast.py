"""``movieid cast check`` and ``movieid cast suggest``."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .common import common, echo, progress_bars, setup_logging
from .options import _built, face_options, shot_config, shot_options


@click.group()
def cast():
    """Cast folders."""


@cast.command("check", epilog="\b\nExamples:\n  movieid cast check cast/\n  movieid cast check cast/ --json")
@click.argument("cast_dir", metavar="CAST")
@face_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@common
def cast_check(cast_dir, face_backend, face_models, cache_dir, as_json, verbose, quiet):
    """Validate a cast folder: faces found in each reference photo.

    Exits 1 when a photo cannot be used (no face, several faces, not an image).
    """
    setup_logging(verbose, quiet)
    from movieid.cast import check_photos, discover, same_faces
    from movieid.errors import printable
    from movieid.faces import load_backend

    entries = discover(cast_dir)
    backend = load_backend(face_backend, face_models)
    checks = check_photos(entries, backend, cache_dir)
    also = {id(check): problem for check, problem in same_faces(checks)}  # as annotate refuses them
    rows = [{"name": c.name, "photo": str(c.path), "faces": c.faces, "status": c.problem or also.get(id(c), "ok")}
            for c in checks]
    problems = sum(r["status"] != "ok" for r in rows)
    if as_json:
        click.echo(json.dumps({"cast": str(cast_dir), "face_backend": backend.name, "photos": rows}, indent=2))
    else:
        # names and paths as a terminal may be shown them: control characters escaped
        shown = [{**r, "name": printable(r["name"]), "photo": printable(r["photo"])} for r in rows]
        width = max(len(r["name"]) for r in shown)
        for r in shown:
            echo(f"{r['name']:<{width}}  {r['faces']:>2} face{'s' if r['faces'] != 1 else ' '}  "
                       f"{r['status']:<4}  {r['photo']}")
        if not quiet:
            echo(f"{len(entries)} people, {len(rows)} photos, {problems} problem"
                       f"{'s' if problems != 1 else ''} ({backend.name})", err=True)
    if problems:
        sys.exit(1)


SUGGEST_EPILOG = """\b
Examples:
  movieid cast suggest film.mp4 -o cast/                  # cast/Unknown 1/, cast/Unknown 2/, cast/index.html
  movieid cast suggest film.mp4 --cast known/ -o known/   # only the people known/ does not know
\b
Each folder holds the best face crops of one person who recurs in the film (largest,
sharpest, most frontal); index.html shows them, most screen time first. Rename a folder
to the person's name and it is a cast member for the next annotate.
"""


@cast.command("suggest", epilog=SUGGEST_EPILOG)
@click.argument("film")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the suggested cast folders and index.html.")
@click.option("--cast", "cast_dir", type=click.Path(path_type=Path), default=None,
              help="The cast already known (its people are not suggested).")
@click.option("--photos", type=click.IntRange(min=1), default=3, show_default=True, help="Face crops per person.")
@click.option("--min-shots", type=click.IntRange(min=1), default=2, show_default=True,
              help="Suggest people seen in at least this many cuts.")
@click.option("--overwrite", is_flag=True, help="Replace suggested folders and index.html that exist.")
@shot_options
@face_options
@click.option("--face-size", type=click.IntRange(min=64), default=1280, show_default=True,
              help="Longest side of frames for face analysis, in pixels.")
@click.option("--min-face", type=click.IntRange(min=1), default=40, show_default=True,
              help="Smallest face analysed (pixels, at --face-size).")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Face-analysis processes (0: one per CPU core).")
@common
def cast_suggest(film, output, cast_dir, photos, min_shots, overwrite, detector, threshold, min_shot_len,
                 max_shot_len, face_backend, face_models, cache_dir, face_size, min_face, workers, verbose, quiet):
    """Suggest cast folders for the people FILM shows who are not in --cast."""
    setup_logging(verbose, quiet)
    from movieid.cast_suggest import suggest_cast
    from movieid.config import Config, FaceConfig

    shots = shot_config(detector, threshold, min_shot_len, max_shot_len)
    config = _built(lambda: Config(
        shots=shots, faces=FaceConfig(backend=face_backend, models=None if face_models is None else str(face_models),
                                      size=face_size, min_face=min_face),
        workers=workers, cache_dir=None if cache_dir is None else str(cache_dir)))
    with progress_bars(quiet) as progress:
        found = suggest_cast(film, output, cast_dir, config, count=photos, min_shots=min_shots, overwrite=overwrite,
                             progress=progress)
    if not quiet:
        for s in found:
            echo(f"{s.label}: {len(s.photos)} photo{'s' if len(s.photos) != 1 else ''}, on screen "
                       f"{s.seconds:.1f} s in {s.shots} shot{'s' if s.shots != 1 else ''} -> {s.folder}")
        echo(f"{len(found)} {'person' if len(found) == 1 else 'people'} suggested; contact sheet "
                   f"{output / 'index.html'}", err=True)
