"""``movieid data``: training samples from your own material (registered in ``cli/main.py``)."""
from __future__ import annotations

from pathlib import Path

import click

from .common import common, echo, setup_logging

DATA_EPILOG = """\b
Examples:
  movieid data from-annotations film.json --film film.mp4 -o samples.json
  movieid data from-boxes boxes.json --images-root photos/ -o stage1.json
  movieid train --model weights/model-base --data samples.json -o runs/film --lora
"""


@click.group("data", epilog=DATA_EPILOG)
def data():
    """Training samples (the released conversation format) from your own material."""


def _output_options(func):
    func = click.option("--overwrite", is_flag=True, help="Replace an existing samples file.")(func)
    func = click.option("--images", "images_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Where crops and frames are written (default: OUTPUT's name + _images/).")(func)
    func = click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
                        help="Samples JSON to write (image paths in it are relative to its folder).")(func)
    return func


def _check_output(output: Path, overwrite: bool) -> None:
    if output.exists() and not overwrite:
        raise click.UsageError(f"{output} exists (--overwrite replaces it)")


def _report(summary, quiet: bool) -> None:
    if not quiet:
        echo(f"{summary.output}: {summary.captions} caption and {summary.locations} location samples, "
                   f"{summary.images} images written; {summary.skipped} without a named person")


@data.command("from-annotations", epilog="\b\nExample:\n  movieid data from-annotations film.json --film film.mp4 -o samples.json")
@click.argument("annotation", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--film", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The film the annotation describes.")
@_output_options
@click.option("--max-images", type=click.IntRange(2, 8), default=8, show_default=True,
              help="Images per sample, ID images included.")
@click.option("--locations/--no-locations", default=True, show_default=True,
              help="Also a grounding sample per named face.")
@common
def from_annotations(annotation, film, output, images_dir, overwrite, max_images, locations, verbose, quiet):
    """ID-reference samples from a reviewed ANNOTATION (movieid's JSON, names corrected) of a film."""
    setup_logging(verbose, quiet)
    from movieid.samples import from_annotation

    _check_output(output, overwrite)
    _report(from_annotation(annotation, film, output, images_dir, max_images=max_images, locations=locations,
                            progress=False if quiet else None), quiet)


@data.command("from-boxes", epilog="\b\nExample:\n  movieid data from-boxes boxes.json --images-root photos/ -o stage1.json")
@click.argument("boxes", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--images-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder the file_name entries are relative to (default: the JSON's folder).")
@_output_options
@common
def from_boxes(boxes, images_root, output, images_dir, overwrite, verbose, quiet):
    """Stage-1 style samples from BOXES: a COCO-style JSON with a 'name' on each person box."""
    setup_logging(verbose, quiet)
    from movieid.samples import from_boxes as build

    _check_output(output, overwrite)
    _report(build(boxes, output, images_root, images_dir, progress=False if quiet else None), quiet)
