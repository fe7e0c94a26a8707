"""Rendering a page: the jinja2 environment over ``templates/`` and embedded pictures."""
from __future__ import annotations

import base64
import io
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=1)
def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("movieid.report", "templates"),
                              autoescape=jinja2.select_autoescape(["html", "j2"], default_for_string=True),
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_page(template: str, **context) -> str:
    return _environment().get_template(template).render(**context)


def data_uri(image: np.ndarray, quality: int = 72) -> str:
    """An RGB array as a JPEG ``data:`` URI."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
