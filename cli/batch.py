"""``movieid batch`` and ``movieid batch-status``."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .common import common, echo, progress_bars, setup_logging
from .options import build_config, pipeline_options

BATCH_EPILOG = """\b
Examples:
  movieid batch /archive --cast cast/ -o /out               # every film under /archive
  movieid batch films.csv -o /out                           # a manifest: film,cast,title (cast per film)
  movieid batch /archive --cast cast/ -o /out --workers 2   # two films at a time
  movieid batch /archive --cast cast/ -o /out --ray auto    # on an existing Ray cluster
  movieid batch-status /out
\b
Outputs mirror the archive's layout under -o. A journal in -o (.movieid-batch.sqlite)
records every film: a re-run skips films done with the same input and settings, redoes
changed ones and films interrupted by a kill, and retries failed ones only with
--retry-failed. A film that fails is recorded with its reason and the batch goes on
(--fail-fast stops at the first failure); the exit code is 0 only when no film has failed.
"""


@click.command(epilog=BATCH_EPILOG)
@click.argument("source")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--cast", "cast_dir", type=click.Path(path_type=Path), default=None,
              help="Cast folder (for a manifest: films without their own cast).")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Run on Ray: auto (the running cluster), local (start one here), or host:port.")
@click.option("--retry-failed", is_flag=True, help="Retry films that failed in an earlier run.")
@click.option("--keep-going/--fail-fast", default=True, show_default=True,
              help="Go on after a film fails, or stop at the first failure.")
@pipeline_options
@common
def batch(source, output, cast_dir, ray_address, retry_failed, keep_going, verbose, quiet, **pipeline):
    """Annotate every film of SOURCE (a folder, or a .csv/.jsonl manifest) into OUTPUT."""
    setup_logging(verbose, quiet)
    from movieid.batch import BatchOptions, run_batch
    from movieid.errors import shell_command
    from movieid.video import format_time

    options = BatchOptions(config=build_config(**pipeline), ray=ray_address, retry_failed=retry_failed,
                           keep_going=keep_going)
    with progress_bars(quiet) as progress:
        summary = run_batch(Path(source), output, cast_dir, options, progress)
    if not quiet:
        echo(f"{'done':>8} {'skipped':>8} {'failed':>8} {'time':>13}")
        echo(f"{summary.done:>8} {summary.skipped:>8} {summary.failed + summary.failed_before:>8} "
                   f"{format_time(summary.seconds):>13}")
        if summary.failed:   # each was named, with its reason, as it failed
            echo(f"  failed: the {summary.failed} film{'s' if summary.failed != 1 else ''} named above; "
                 f"movieid batch-status {shell_command(output)} lists every film's state and reason")
        if summary.failed_before:
            echo(f"  ({summary.failed_before} failed in an earlier run; --retry-failed retries them)")
    if not summary.ok:
        sys.exit(1)


@click.command("batch-status")
@click.argument("output", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@common
def batch_status(output, as_json, verbose, quiet):
    """Show each film of a batch output folder: pending, running, interrupted, done or failed (with why)."""
    setup_logging(verbose, quiet)
    from movieid.batch import status
    from movieid.batch.runner import summarise
    from movieid.errors import printable

    entries = status(output)
    if as_json:
        click.echo(json.dumps([{"film": e.film, "key": e.key, "state": e.state, "reason": e.reason,
                                "seconds": e.seconds, "attempts": e.attempts, "outputs": e.outputs}
                               for e in entries], indent=2))
        return
    keys = [printable(e.key) for e in entries]
    width = max([len(k) for k in keys] + [4])
    for e, key in zip(entries, keys):
        seconds = "" if e.seconds is None else f"{e.seconds:8.1f}s"
        echo(f"{e.state:<11} {key:<{width}} {seconds:>9}  {e.reason or ''}".rstrip())
    counts = summarise(entries)
    echo(", ".join(f"{n} {state}" for state, n in counts.items()), err=True)
