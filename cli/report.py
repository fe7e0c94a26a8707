"""``movieid report``: the review page of an annotation JSON."""
from __future__ import annotations

import logging
from pathlib import Path

import click

from .common import FiniteFloat, common, echo, progress_bars, setup_logging

REPORT_EPILOG = """\b
Examples:
  movieid report film.json                       # film.html beside the JSON
  movieid report film.json --film /films/film.mp4 -o review/film.html --overwrite
\b
The JSON is checked against the annotation schema first. With the film (--film, the path
the JSON records, or a file of that name beside the page), keyframes become thumbnails and
the page plays the film with its captions.
"""


@click.command(epilog=REPORT_EPILOG)
@click.argument("annotation", metavar="FILM.json", type=click.Path(path_type=Path))
@click.option("--film", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The annotated film (default: the path the JSON records).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The page to write, *.html (default: FILM.html beside the JSON).")
@click.option("--overwrite", is_flag=True, help="Replace the page if it exists.")
@click.option("--embed-photos-from", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Embed the cast photos the JSON names that lie in this folder (a cast folder you trust); "
                   "by default none: a JSON from elsewhere may name any picture on this disk.")
@click.option("--min-duration", type=FiniteFloat(0), default=1.0, show_default=True,
              help="Shortest time in seconds a subtitle stays on screen (the page's caption track).")
@common
def report(annotation, film, output, overwrite, embed_photos_from, min_duration, verbose, quiet):
    """Write the review page (HTML) of an annotation JSON."""
    setup_logging(verbose, quiet)
    from movieid.annotation import read_annotation
    from movieid.files import check_input_file
    from movieid.subtitles import TrackStyle
    from movieid.writers import check_outputs, output_paths, write_outputs

    output = output or annotation.with_suffix(".html")
    if output.suffix.lower() != ".html":
        raise click.BadParameter("the page must be a .html file", param_hint="-o/--output")
    doc = read_annotation(annotation)
    if embed_photos_from is None and doc["cast"]["members"]:
        logging.getLogger("movieid.report").warning(
            "%s: the cast's photos are not embedded (a JSON may name any picture on this disk); "
            "--embed-photos-from CAST embeds those in a folder you trust", annotation)
    if film is not None:
        check_input_file(film, "video file")
    paths = output_paths(output.parent, output.stem, ["html"])
    check_outputs(paths, overwrite)
    with progress_bars(quiet) as progress:
        written = write_outputs(doc, paths, overwrite, TrackStyle(min_duration=min_duration), film=film,
                                progress=progress, photos_from=embed_photos_from, source=annotation)
    if not quiet:
        echo(f"wrote {written[0]}")
