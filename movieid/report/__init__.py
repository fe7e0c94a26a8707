"""HTML pages people read: the review page of an annotation, the contact sheet of cast suggestions.

Each page is one self-contained file (pictures embedded as data URIs, styles and script
inline, nothing fetched), opened from disk in any browser. Pages are jinja2 templates in
``templates/``; this package only gathers what they show.
"""
from __future__ import annotations

from .pages import data_uri, render_page
from .review import render_html

__all__ = ["render_html", "render_page", "data_uri"]
