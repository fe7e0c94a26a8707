"""``movieid models download``."""
from __future__ import annotations

from pathlib import Path

import click

from .common import FiniteFloat, common, echo, setup_logging


@click.group()
def models():
    """Model files."""


@models.command("download", epilog="\b\nExample:\n  movieid models download insightface --name buffalo_l")
@click.argument("what", type=click.Choice(["insightface"]))
@click.option("--name", default="buffalo_l", show_default=True, help="Model pack name.")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of packs (default: insightface's, ~/.insightface/models).")
@click.option("--timeout", type=FiniteFloat(1), default=10.0, show_default=True,
              help="Network timeout in seconds.")
@click.option("--sha256", default=None, metavar="HEX", help="The zip's expected SHA-256 (refused otherwise).")
@common
def models_download(what, name, root, timeout, sha256, verbose, quiet):
    """Download a face model pack (needs internet)."""
    setup_logging(verbose, quiet)
    from movieid.faces.insightface_backend import download_pack

    path = download_pack(name=name, root=root, timeout=timeout, progress=not quiet, sha256=sha256)
    echo(f"{what} pack {name} ready in {path}")
