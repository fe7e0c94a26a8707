"""The ``movieid`` command line: thin Click commands over the ``movieid`` library.

Exit codes: 0 ok, 1 runtime failure (bad input file, model problem), 2 usage error.
Every failure is one line on stderr (``-v`` adds the traceback of unexpected errors).
"""
from __future__ import annotations

import json
import logging
import sys
import traceback
import warnings
from pathlib import Path

import click

from movieid import __version__
from movieid.errors import MovieIdError
from movieid.models.errors import InputError

log = logging.getLogger("movieid")


# ----------------------------------------------------------------------------- shared options

def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    if quiet:
        level = logging.ERROR
    logging.basicConfig(level=level, format="movieid: %(levelname)s: %(message)s", force=True)
    logging.captureWarnings(True)
    if verbose < 2:
        warnings.filterwarnings("ignore")


def common(func):
    """``-v`` and ``--quiet`` on every command (they work before or after the arguments)."""
    func = click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")(func)
    func = click.option("-q", "--quiet", is_flag=True, help="No progress bars, warnings or summary.")(func)
    return func


class OneLineErrors(click.Group):
    """Report every failure as a single line and map it to the documented exit code."""

    def main(self, args=None, prog_name=None, **extra):  # noqa: D102
        args = list(sys.argv[1:] if args is None else args)
        verbose = any(a == "--verbose" or (a.startswith("-v") and set(a[1:]) == {"v"}) for a in args)
        try:
            return super().main(args, prog_name=prog_name, standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "movieid"
            click.echo(f"{where}: error: {exc.format_message()} (see --help)", err=True)
            sys.exit(2)
        except click.Abort:
            click.echo("movieid: interrupted", err=True)
            sys.exit(130)
        except KeyboardInterrupt:
            click.echo("movieid: interrupted", err=True)
            sys.exit(130)
        except InputError as exc:   # MovieIdError and the models' own errors
            click.echo(f"movieid: error: {exc}", err=True)
            sys.exit(1)
        except click.ClickException as exc:
            click.echo(f"movieid: error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except Exception as exc:  # a bug: keep it to one line unless asked for details
            if verbose:
                traceback.print_exc()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            click.echo(f"movieid: internal error: {type(exc).__name__}: {first} "
                       "(run with -v for the traceback)", err=True)
            sys.exit(1)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"],
                                                  "max_content_width": 100})
@click.version_option(__version__, prog_name="movieid")
def cli():
    """Per-shot, character-aware captions for films: SRT, WebVTT and JSON.

    \b
    movieid annotate film.mp4 --cast cast/      captions next to the film
    movieid shots film.mp4                      the shot list
    movieid cast check cast/                    validate a cast folder
    movieid cast suggest film.mp4 -o cast/      cast folders of the people the film shows
    movieid report film.json                    the review page of an annotation
    """


# ----------------------------------------------------------------------------- annotate

def _shot_options(func):
    func = click.option("--max-shot-len", type=click.FloatRange(min=0), default=10.0, show_default=True,
                        help="Split longer shots into parts of at most this many seconds (0: never).")(func)
    func = click.option("--min-shot-len", type=click.FloatRange(min=0), default=0.1, show_default=True,
                        help="Shortest shot in seconds (flash cuts above this are kept).")(func)
    func = click.option("--threshold", type=click.FloatRange(min=0), default=None,
                        help="Cut threshold (default: adaptive 3.0, content 27.0).")(func)
    func = click.option("--detector", type=click.Choice(["adaptive", "content"]), default="adaptive",
                        show_default=True, help="PySceneDetect detector.")(func)
    return func


def _make_shot_options(detector, threshold, min_shot_len, max_shot_len):
    from movieid.shots import ShotOptions

    return ShotOptions(detector=detector, threshold=threshold, min_shot_len=min_shot_len,
                       max_shot_len=max_shot_len)


def _face_options(func):
    func = click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Where cast embeddings are cached (default: $MOVIEID_CACHE_DIR or "
                             "~/.cache/movieid).")(func)
    func = click.option("--face-models", type=click.Path(path_type=Path), default=None,
                        help="insightface model pack folder (default: ~/.insightface/models/buffalo_l).")(func)
    func = click.option("--face-backend", type=click.Choice(["auto", "dlib", "insightface"]), default="auto",
                        show_default=True, help="auto: insightface when its models are present, else dlib.")(func)
    return func


def _output_options(func):
    """What is written: formats, text-track conventions, the audio-description track."""
    from movieid.writers import CHOICES

    options = [
        click.option("--format", "formats", type=click.Choice(CHOICES), multiple=True,
                     help="Output formats (repeatable; default: srt, vtt and json). html: the review page; "
                          "csv: one row per shot; otio: an OpenTimelineIO timeline with a marker per shot."),
        click.option("--ad", is_flag=True,
                     help="Also write an audio-description track (FILM.ad.vtt / FILM.ad.srt) placed in the "
                          "pauses between speech (needs silero-vad: pip install 'movieid[ad]')."),
        click.option("--reading-speed", type=click.FloatRange(min=1), default=15.0, show_default=True,
                     help="--ad: characters per second a description line needs."),
        click.option("--min-duration", type=click.FloatRange(min=0), default=1.0, show_default=True,
                     help="Shortest time in seconds a subtitle stays on screen (every text track)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _pipeline_options(func):
    """The options annotate and batch share: engine, shots, windows, faces, cast."""
    options = [
        click.option("--engine", type=click.Choice(["faces", "ida-vlm"]), default="faces", show_default=True,
                     help="faces: offline captions from face recognition; ida-vlm: the ID-aware VLM."),
        click.option("--model", default=None, help="ida-vlm: checkpoint folder or hub id (jiyatai/IDA-VLM)."),
        click.option("--variant", type=click.Choice(["base", "idf"]), default=None,
                     help="ida-vlm: checkpoint variant (default: base)."),
        click.option("--device", default=None, help="ida-vlm: torch device (default: cuda if available)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
                     help="ida-vlm: shots per generation batch."),
        click.option("--max-new-tokens", type=click.IntRange(min=1), default=64, show_default=True,
                     help="ida-vlm: longest caption in tokens."),
        _shot_options,
        click.option("--frames-per-shot", type=click.IntRange(min=1), default=3, show_default=True,
                     help="Keyframes (test frames) per shot."),
        click.option("--max-images", type=click.IntRange(min=2), default=8, show_default=True,
                     help="Images per window, cast ID images included (IDA-VLM was trained with 8)."),
        _face_options,
        click.option("--face-size", type=click.IntRange(min=64), default=1280, show_default=True,
                     help="Longest side of frames for face analysis, in pixels."),
        click.option("--min-face", type=click.IntRange(min=1), default=40, show_default=True,
                     help="Smallest face analysed (pixels, at --face-size)."),
        click.option("--cast-strict/--no-cast-strict", default=True, show_default=True,
                     help="Fail on a cast photo without exactly one face, or skip it with a warning."),
        _output_options,
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _track_options(ad, reading_speed, min_duration, **_):
    """(text-track style, audio-description options or None) from the output options."""
    from movieid.describe import AdOptions
    from movieid.subtitles import TrackStyle

    if ad:
        from movieid.speech import model_path

        model_path()   # no voice-activity model: fail before any work
    return TrackStyle(min_duration=min_duration), AdOptions(reading_speed=reading_speed) if ad else None


def _annotate_options(engine, model, variant, device, batch_size, max_new_tokens, detector, threshold,
                      min_shot_len, max_shot_len, frames_per_shot, max_images, face_backend, face_models,
                      cache_dir, face_size, min_face, cast_strict, workers=0, **_):
    from movieid.pipeline import AnnotateOptions

    if engine == "ida-vlm" and not model:
        raise click.UsageError("--engine ida-vlm needs --model (a checkpoint folder or hub id)")
    engine_options = {}
    if engine == "ida-vlm":
        engine_options = {"model": model, "variant": variant, "device": device, "batch_size": batch_size,
                          "max_new_tokens": max_new_tokens}
    options = AnnotateOptions(
        shots=_make_shot_options(detector, threshold, min_shot_len, max_shot_len),
        frames_per_shot=frames_per_shot, max_images=max_images, face_backend=face_backend,
        face_models=None if face_models is None else str(face_models), face_size=face_size,
        min_face=min_face, cast_strict=cast_strict, workers=workers,
        cache_dir=None if cache_dir is None else str(cache_dir), engine=engine, engine_options=engine_options)
    options.validate()
    return options


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


@cli.command(epilog=ANNOTATE_EPILOG)
@click.argument("film")
@click.option("--cast", "cast_dir", type=click.Path(path_type=Path), default=None,
              help="Cast folder (one sub-folder of reference photos per person).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Output folder (default: the film's folder).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@_pipeline_options
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Face-analysis processes (0: one per CPU core).")
@common
def annotate(film, cast_dir, output, overwrite, formats, verbose, quiet, **pipeline):
    """Write per-shot captions of FILM as SRT, WebVTT and JSON."""
    _setup_logging(verbose, quiet)
    from movieid.describe import describe_film
    from movieid.pipeline import Annotator
    from movieid.video import probe
    from movieid.writers import FORMATS, check_outputs, with_ad, write_outputs

    options = _annotate_options(**pipeline)
    style, ad = _track_options(**pipeline)
    film = probe(film)  # a bad film fails before any model loads
    paths = check_outputs(output or film.path.parent, film.path.stem, with_ad(formats or FORMATS, ad is not None),
                          overwrite)
    progress = False if quiet else None
    with Annotator(options, cast_dir, progress=progress) as annotator:
        result = annotator.annotate(film)
    doc = result.to_json()
    if ad is not None:
        doc = describe_film(doc, film.path, ad, style, progress=progress)
    written = write_outputs(doc, paths, style, progress=progress)
    if not quiet:
        named = sorted({n for s in result.shots for n in s.faces.names() if not n.startswith("Unknown")})
        click.echo(f"{film.path.name}: {len(result.shots)} shots, cast on screen: {', '.join(named) or 'nobody'}; "
                   f"{result.unknown_count} unknown")
        for path in written:
            click.echo(f"  wrote {path}")


# ----------------------------------------------------------------------------- batch

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


@cli.command(epilog=BATCH_EPILOG)
@click.argument("source")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--cast", "cast_dir", type=click.Path(path_type=Path), default=None,
              help="Cast folder (for a manifest: films without their own cast).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Films analysed at once (processes, or Ray actors with --ray).")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Run on Ray: auto (the running cluster), local (start one here), or host:port.")
@click.option("--retry-failed", is_flag=True, help="Retry films that failed in an earlier run.")
@click.option("--keep-going/--fail-fast", default=True, show_default=True,
              help="Go on after a film fails, or stop at the first failure.")
@_pipeline_options
@common
def batch(source, output, cast_dir, workers, ray_address, retry_failed, keep_going, formats, verbose, quiet,
          **pipeline):
    """Annotate every film of SOURCE (a folder, or a .csv/.jsonl manifest) into OUTPUT."""
    _setup_logging(verbose, quiet)
    from movieid.batch import BatchOptions, run_batch
    from movieid.video import format_time
    from movieid.writers import FORMATS, with_ad

    style, ad = _track_options(**pipeline)
    options = BatchOptions(annotate=_annotate_options(**pipeline), formats=with_ad(formats or FORMATS, ad is not None),
                           workers=workers, ray=ray_address, retry_failed=retry_failed, keep_going=keep_going,
                           style=style, ad=ad)
    summary = run_batch(Path(source), output, cast_dir, options, progress=False if quiet else None)
    if not quiet:
        click.echo(f"{'done':>8} {'skipped':>8} {'failed':>8} {'time':>13}")
        click.echo(f"{summary.done:>8} {summary.skipped:>8} {summary.failed + summary.failed_before:>8} "
                   f"{format_time(summary.seconds):>13}")
        for key, reason in summary.failures[:20]:
            click.echo(f"  failed: {key}: {reason}")
        if summary.failed_before:
            click.echo(f"  ({summary.failed_before} failed in an earlier run; --retry-failed retries them)")
    if not summary.ok:
        sys.exit(1)


@cli.command("batch-status")
@click.argument("output", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@common
def batch_status(output, as_json, verbose, quiet):
    """Show each film of a batch output folder: done, failed (with the reason) or pending."""
    _setup_logging(verbose, quiet)
    from movieid.batch import status
    from movieid.batch.runner import summarise

    entries = status(output)
    if as_json:
        click.echo(json.dumps([{"film": e.film, "key": e.key, "state": e.state, "reason": e.reason,
                                "seconds": e.seconds, "attempts": e.attempts, "outputs": e.outputs}
                               for e in entries], indent=2))
        return
    width = max([len(e.key) for e in entries] + [4])
    for e in entries:
        seconds = "" if e.seconds is None else f"{e.seconds:8.1f}s"
        click.echo(f"{e.state:<8} {e.key:<{width}} {seconds:>9}  {e.reason or ''}".rstrip())
    counts = summarise(entries)
    click.echo(", ".join(f"{n} {state}" for state, n in counts.items()), err=True)


# ----------------------------------------------------------------------------- shots

@cli.command(epilog="\b\nExamples:\n  movieid shots film.mp4\n  movieid shots film.mp4 --json > shots.json"
                    "\n  movieid shots film.mp4 --detector content --threshold 30")
@click.argument("film")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_shot_options
@common
def shots(film, as_json, detector, threshold, min_shot_len, max_shot_len, verbose, quiet):
    """List the shots of FILM (start, end, frames)."""
    _setup_logging(verbose, quiet)
    from tqdm import tqdm

    from movieid.shots import detect_shots
    from movieid.video import format_time, probe

    info = probe(film)
    with tqdm(total=info.frame_count, desc="shots", unit="frame", leave=False,
              disable=True if quiet else None) as bar:
        found = detect_shots(info, _make_shot_options(detector, threshold, min_shot_len, max_shot_len),
                             on_frame=lambda i: bar.update(1))
    rows = [{"index": s.index, "cut": s.cut, "part": s.part, "parts": s.parts, "start": round(s.start, 4),
             "end": round(s.end, 4), "start_frame": s.start_frame, "end_frame": s.end_frame} for s in found]
    if as_json:
        click.echo(json.dumps({"film": info.metadata(), "shots": rows}, indent=2))
        return
    click.echo(f"{'shot':>5}  {'start':>12}  {'end':>12}  {'frames':>13}  {'seconds':>8}")
    for s in found:
        part = f"  (part {s.part}/{s.parts})" if s.parts > 1 else ""
        click.echo(f"{s.index:>5}  {format_time(s.start):>12}  {format_time(s.end):>12}  "
                   f"{s.start_frame:>6}-{s.end_frame - 1:<6}  {s.duration:8.3f}{part}")
    if not quiet:
        click.echo(f"{len(found)} shots in {format_time(info.duration)}", err=True)


# ----------------------------------------------------------------------------- cast

@cli.group()
def cast():
    """Cast folders."""


@cast.command("check", epilog="\b\nExamples:\n  movieid cast check cast/\n  movieid cast check cast/ --json")
@click.argument("cast_dir", metavar="CAST")
@_face_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@common
def cast_check(cast_dir, face_backend, face_models, cache_dir, as_json, verbose, quiet):
    """Validate a cast folder: faces found in each reference photo.

    Exits 1 when a photo cannot be used (no face, several faces, not an image).
    """
    _setup_logging(verbose, quiet)
    from movieid.cast import EmbeddingCache, default_cache_dir, discover, photo_faces, photo_problem, usable_faces
    from movieid.faces import load_backend

    entries = discover(cast_dir)
    backend = load_backend(face_backend, face_models)
    cache = EmbeddingCache(cache_dir or default_cache_dir(), backend.model_id)
    rows, problems = [], 0
    for entry in entries:
        for path in entry.images:
            try:
                _, faces = photo_faces(path, backend, cache)
                problem = photo_problem(faces)
                found = len(usable_faces(faces))
            except MovieIdError as exc:
                problem, found = exc.problem, 0
            problems += problem is not None
            rows.append({"name": entry.name, "photo": str(path), "faces": found,
                         "status": "ok" if problem is None else problem})
    if as_json:
        click.echo(json.dumps({"cast": str(cast_dir), "face_backend": backend.name, "photos": rows}, indent=2))
    else:
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            click.echo(f"{r['name']:<{width}}  {r['faces']:>2} face{'s' if r['faces'] != 1 else ' '}  "
                       f"{r['status']:<4}  {r['photo']}")
        if not quiet:
            click.echo(f"{len(entries)} people, {len(rows)} photos, {problems} problem"
                       f"{'s' if problems != 1 else ''} ({backend.name})", err=True)
    if problems:
        sys.exit(1)


@cast.command("suggest", epilog="""\b
Examples:
  movieid cast suggest film.mp4 -o cast/                  # cast/Unknown 1/, cast/Unknown 2/, cast/index.html
  movieid cast suggest film.mp4 --cast known/ -o known/   # only the people known/ does not know
\b
Each folder holds the best face crops of one person who recurs in the film (largest,
sharpest, most frontal); index.html shows them, most screen time first. Rename a folder
to the person's name and it is a cast member for the next annotate.
""")
@click.argument("film")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the suggested cast folders and index.html.")
@click.option("--cast", "cast_dir", type=click.Path(path_type=Path), default=None,
              help="The cast already known (its people are not suggested).")
@click.option("--photos", type=click.IntRange(min=1), default=3, show_default=True, help="Face crops per person.")
@click.option("--min-shots", type=click.IntRange(min=1), default=2, show_default=True,
              help="Suggest people seen in at least this many cuts.")
@click.option("--overwrite", is_flag=True, help="Replace suggested folders and index.html that exist.")
@_shot_options
@_face_options
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
    _setup_logging(verbose, quiet)
    from movieid.cast_suggest import suggest_cast
    from movieid.pipeline import AnnotateOptions

    options = AnnotateOptions(
        shots=_make_shot_options(detector, threshold, min_shot_len, max_shot_len), face_backend=face_backend,
        face_models=None if face_models is None else str(face_models), face_size=face_size, min_face=min_face,
        workers=workers, cache_dir=None if cache_dir is None else str(cache_dir))
    found = suggest_cast(film, output, cast_dir, options, count=photos, min_shots=min_shots, overwrite=overwrite,
                         progress=False if quiet else None)
    if not quiet:
        for s in found:
            click.echo(f"{s.label}: {len(s.photos)} photo{'s' if len(s.photos) != 1 else ''}, on screen "
                       f"{s.seconds:.1f} s in {s.shots} shot{'s' if s.shots != 1 else ''} -> {s.folder}")
        click.echo(f"{len(found)} {'person' if len(found) == 1 else 'people'} suggested; contact sheet "
                   f"{output / 'index.html'}", err=True)


# ----------------------------------------------------------------------------- report

@cli.command(epilog="""\b
Examples:
  movieid report film.json                       # film.html beside the JSON
  movieid report film.json --film /films/film.mp4 -o review/film.html --overwrite
\b
The JSON is checked against the annotation schema first. With the film (--film, the path
the JSON records, or a file of that name beside the page), keyframes become thumbnails and
the page plays the film with its captions.
""")
@click.argument("annotation", metavar="FILM.json", type=click.Path(path_type=Path))
@click.option("--film", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The annotated film (default: the path the JSON records).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The page to write, *.html (default: FILM.html beside the JSON).")
@click.option("--overwrite", is_flag=True, help="Replace the page if it exists.")
@click.option("--min-duration", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Shortest time in seconds a subtitle stays on screen (the page's caption track).")
@common
def report(annotation, film, output, overwrite, min_duration, verbose, quiet):
    """Write the review page (HTML) of an annotation JSON."""
    _setup_logging(verbose, quiet)
    from movieid.annotation import read_annotation
    from movieid.subtitles import TrackStyle
    from movieid.writers import check_outputs, write_outputs

    output = output or annotation.with_suffix(".html")
    if output.suffix.lower() != ".html":
        raise click.BadParameter("the page must be a .html file", param_hint="-o/--output")
    doc = read_annotation(annotation)
    if film is not None:
        from movieid.video import check_readable_file

        check_readable_file(film, "video file")
    paths = check_outputs(output.parent, output.stem, ["html"], overwrite)
    written = write_outputs(doc, paths, TrackStyle(min_duration=min_duration), film=film,
                            progress=False if quiet else None)
    if not quiet:
        click.echo(f"wrote {written[0]}")


# ----------------------------------------------------------------------------- models

@cli.group()
def models():
    """Model files."""


@models.command("download", epilog="\b\nExample:\n  movieid models download insightface --name buffalo_l")
@click.argument("what", type=click.Choice(["insightface"]))
@click.option("--name", default="buffalo_l", show_default=True, help="Model pack name.")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of packs (default: insightface's, ~/.insightface/models).")
@click.option("--timeout", type=click.FloatRange(min=1), default=10.0, show_default=True,
              help="Network timeout in seconds.")
@common
def models_download(what, name, root, timeout, verbose, quiet):
    """Download a face model pack (needs internet)."""
    _setup_logging(verbose, quiet)
    from movieid.faces.insightface_backend import download_pack

    path = download_pack(name=name, root=root, timeout=timeout, progress=not quiet)
    click.echo(f"{what} pack {name} ready in {path}")


def main() -> None:
    cli.main(prog_name="movieid")


if __name__ == "__main__":
    main()
