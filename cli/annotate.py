"""``movieid annotate`` and ``movieid shots``."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .common import common, echo, progress_bars, setup_logging
from .options import build_config, pipeline_options, shot_config, shot_options

ANNOTATE_EPILOG = """\b
Examples:
  movieid annotate film.mp4 --cast cast/                 # film.srt, film.vtt, film.json beside the film
  movieid annotate film.mp4 --cast cast/ -o subs/ --overwrite
  movieid annotate film.mp4 --cast cast/ --format srt --max-shot-len 6
  movieid annotate film.mp4 --cast cast/ --engine ida-vlm --model weights/model-base
\b
A cast folder holds one folder of reference photos per person (cast/Rose Leslie/1.jpg),
or a cast.yaml listing names, aliases and photos. Each photo must show exactly one face.
"""


@click.command(epilog=ANNOTATE_EPILOG)
@click.argument("film")
@click.option("--cast", "cast_dir", type=click.Path(path_type=Path), default=None,
              help="Cast folder (one sub-folder of reference photos per person).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Output folder (default: the film's folder).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@pipeline_options
@common
def annotate(film, cast_dir, output, overwrite, verbose, quiet, **pipeline):
    """Write per-shot captions of FILM as SRT, WebVTT and JSON."""
    setup_logging(verbose, quiet)
    from movieid.annotation import document
    from movieid.cast import discover
    from movieid.errors import printable
    from movieid.pipeline import annotate as annotate_film
    from movieid.video import probe
    from movieid.writers import check_outputs, output_paths, write_annotation

    config = build_config(overwrite=overwrite, **pipeline)
    film = probe(film)  # a bad film fails before any model loads
    if cast_dir is not None:
        discover(cast_dir)  # inputs before outputs: a missing cast is the problem to report first
    paths = output_paths(output or film.path.parent, film.path.stem, config.outputs.files)
    check_outputs(paths, config.outputs.overwrite)
    with progress_bars(quiet) as progress:
        result = annotate_film(film, cast_dir, config, progress)
        written = write_annotation(document(result), paths, config.outputs, film.path, progress)
    if not quiet:
        named = sorted({p.name for s in result.shots for p in s.people.people if p.name})
        echo(f"{printable(film.path.name)}: {len(result.shots)} shots, "
                   f"cast on screen: {', '.join(named) or 'nobody'}; {result.unknown_count} unknown")
        for path in written:
            echo(f"  wrote {printable(path)}")


@click.command(epilog="\b\nExamples:\n  movieid shots film.mp4\n  movieid shots film.mp4 --json > shots.json"
                      "\n  movieid shots film.mp4 --detector content --threshold 30")
@click.argument("film")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@shot_options
@common
def shots(film, as_json, detector, threshold, min_shot_len, max_shot_len, verbose, quiet):
    """List the shots of FILM (start, end, frames)."""
    setup_logging(verbose, quiet)
    from movieid.annotation import film_json, shot_json
    from movieid.progress import report
    from movieid.scan import scan_film
    from movieid.video import format_time, probe

    config = shot_config(detector, threshold, min_shot_len, max_shot_len)
    info = probe(film)
    with progress_bars(quiet) as progress:
        found = [s.shot for s in scan_film(info, config, frames_per_shot=1,
                                           on_frame=lambda n: report(progress, "shots", n, info.frame_count))]
    if as_json:
        click.echo(json.dumps({"film": film_json(info), "shots": [shot_json(s) for s in found]}, indent=2))
        return
    echo(f"{'shot':>5}  {'start':>12}  {'end':>12}  {'frames':>13}  {'seconds':>8}")
    for s in found:
        part = f"  (part {s.part}/{s.parts})" if s.parts > 1 else ""
        echo(f"{s.index:>5}  {format_time(s.start):>12}  {format_time(s.end):>12}  "
                   f"{s.start_frame:>6}-{s.end_frame - 1:<6}  {s.duration:8.3f}{part}")
    if not quiet:
        echo(f"{len(found)} shots in {format_time(info.duration)}", err=True)
