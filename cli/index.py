"""``movieid index``: the archive index of an output folder, rebuilt from its sidecars."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .common import common, progress_bars, setup_logging

INDEX_EPILOG = """\b
Examples:
  movieid index /out                     # /out/index.sqlite and /out/index.html
  movieid index /out --parquet /out/pq   # also films, shots, persons, people as Parquet
\b
A batch keeps the index up to date as films finish; rebuild it after editing sidecars, for a
folder of annotate outputs, or when the index was lost. In a batch's folder only the films its
journal records done are indexed. A file that is not a movieid annotation is reported and
left out (exit 1); the rest is indexed.
"""


@click.command("index", epilog=INDEX_EPILOG)
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--parquet", "parquet_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write the index's tables as Parquet files into this folder (pip install -c constraints.txt -e '.[parquet]').")
@common
def index(folder, parquet_dir, verbose, quiet):
    """Rebuild the archive index (FOLDER/index.sqlite) from the annotation JSONs below FOLDER."""
    setup_logging(verbose, quiet)
    from movieid.archive import rebuild
    from movieid.batch.runner import _Lock
    from movieid.errors import MovieIdError

    if not folder.is_dir():
        raise MovieIdError("no such folder" if not folder.exists() else "is not a folder", folder)
    if parquet_dir is not None:
        from movieid.archive.parquet import check_pyarrow

        check_pyarrow()
    lock = _Lock(folder) if (folder / ".movieid-batch.sqlite").exists() else None   # not while a batch writes
    try:
        with progress_bars(quiet) as progress:
            result = rebuild(folder, progress)
    finally:
        if lock is not None:
            lock.release()
    for problem in result.problems:
        click.echo(f"movieid: warning: {problem} (left out)", err=True)
    written = []
    if parquet_dir is not None:
        from movieid.archive.parquet import write_parquet

        written = write_parquet(folder, parquet_dir)
    if not quiet:
        click.echo(f"indexed {result.films} films, {result.shots} shots into {folder / 'index.sqlite'}")
        for path in written:
            click.echo(f"wrote {path}")
    if result.problems:
        sys.exit(1)
