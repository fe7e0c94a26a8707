"""``movieid cast check``."""
from __future__ import annotations

import json
import sys

import click

from .common import common, setup_logging
from .options import face_options


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
    from movieid.cast import check_photos, discover
    from movieid.faces import load_backend

    entries = discover(cast_dir)
    backend = load_backend(face_backend, face_models)
    checks = check_photos(entries, backend, cache_dir)
    rows = [{"name": c.name, "photo": str(c.path), "faces": c.faces, "status": c.problem or "ok"} for c in checks]
    problems = sum(c.problem is not None for c in checks)
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
