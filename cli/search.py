"""``movieid search``: shots of an archive by the people on screen, words and film."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import click

from .common import FiniteFloat, common, setup_logging

SEARCH_EPILOG = """\b
Examples:
  movieid search /out --person Alice --person Bob        # both on screen together
  movieid search /out --text kitchen --film 'season1/*'
  movieid search /out --person 'Archive unknown 7' --json
  movieid search /out --person Alice --html alice.html   # a page with thumbnails
\b
Times are the films' presentation times (seconds on the film's timeline). Unknown people are
shown by their archive label, the same person across films. The exit status is 1 when nothing
matches, as for grep.
"""


@click.command("search", epilog=SEARCH_EPILOG)
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--person", "persons", multiple=True, metavar="NAME",
              help="A cast name or an archive label; repeat it: all of them on screen together.")
@click.option("--text", default=None, metavar="WORDS", help="Words the caption or the AD line holds (all of them).")
@click.option("--film", default=None, metavar="GLOB", help="Only films whose path below the archive matches.")
@click.option("--min-confidence", type=FiniteFloat(0, 1), default=0.0, show_default=True,
              help="A cast name counts only where the film named it this surely (0..1).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of hits.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV: film,start,end,names,caption.")
@click.option("--html", "html_page", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a page of the hits with thumbnails and links to the review pages.")
@common
def search(folder, persons, text, film, min_confidence, as_json, as_csv, html_page, verbose, quiet):
    """Find the shots of the archive in FOLDER (a batch output or an indexed folder)."""
    setup_logging(verbose, quiet)
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    from movieid.archive import Query, open_index
    from movieid.archive import search as find
    from movieid.errors import printable
    from movieid.video import format_time

    query = Query(tuple(persons), text, film, min_confidence)
    with open_index(folder) as index:
        hits, lacking = find(index, folder, query)
        if html_page is not None:
            from movieid.archive.pages import write_hits_page

            described = " ".join([*(f"--person {p!r}" for p in persons), *([f"--text {text!r}"] if text else []),
                                  *([f"--film {film!r}"] if film else [])]) or "every shot"
            write_hits_page(index, folder, hits, html_page, described)
    if lacking:
        click.echo(f"movieid: warning: {lacking} films the batch recorded done are not in the index "
                   f"(run: movieid index {printable(folder)})", err=True)
    if as_json:
        click.echo(json.dumps([h.json() for h in hits], indent=2, ensure_ascii=False))
    elif as_csv:
        from movieid.exports import spreadsheet_text

        # as --format csv writes its cells: quoted, names a JSON list, no cell a formula
        writer = csv.writer(sys.stdout, lineterminator="\n", quoting=csv.QUOTE_ALL)
        writer.writerow(["film", "start", "end", "names", "caption"])
        writer.writerows([spreadsheet_text(h.film), f"{h.start:.3f}", f"{h.end:.3f}",
                          spreadsheet_text(json.dumps(list(h.names), ensure_ascii=False)), spreadsheet_text(h.caption)]
                         for h in hits)
    else:
        for h in hits:
            click.echo(f"{printable(h.film)}  {format_time(h.start)} --> {format_time(h.end)}  "
                       f"{printable(', '.join(h.names)) or '-'}  {printable(h.caption)}")
    if not hits:
        sys.exit(1)
