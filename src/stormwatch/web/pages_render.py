"""Rendering pages: one Jinja2 environment with autoescape always on, and the filters pages use.

Every value from the store (attacker-controlled strings included: NativeOS, user names, pipe
paths, URLs) reaches HTML only through a template expression, which Jinja2 escapes; nothing is
marked safe except markup this package builds itself (the SVG charts, whose own text goes
through :func:`markupsafe.escape`). Links to data-derived paths are built with
:func:`urllib.parse.quote`, so a value can never leave its path segment or become a
``javascript:`` URL.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

import jinja2

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("stormwatch.web", "templates"),
    autoescape=True,  # all templates, whatever their extension
    # event data comes from sensors and logs: a field an event lacks renders empty, never fails the page
    undefined=jinja2.ChainableUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def seg(value: object) -> str:
    """``value`` as one URL path segment (every reserved character percent-encoded)."""
    return quote(str(value), safe="")


def fmt_ts(value: object) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return "" if value is None else str(value)


def fmt_num(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def fmt_pct(value: object) -> str:
    return "–" if value is None else f"{float(value) * 100:+.0f} %"  # type: ignore[arg-type]


def fmt_js(value: object) -> str:
    """A decoded event field as text: strings as they are, anything else as compact JSON. The
    result is plain text (not markup), so the template escapes it."""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, ensure_ascii=False, separators=(", ", ": "))


_env.filters.update(seg=seg, ts=fmt_ts, num=fmt_num, pct=fmt_pct, js=fmt_js)


def render(template: str, **context: Any) -> str:
    return _env.get_template(template).render(**context)


def render_error(status: int, detail: str) -> str:
    return render("error.html", title=f"{status}", status=status, detail=detail)
