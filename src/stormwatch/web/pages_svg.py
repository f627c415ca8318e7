"""Charts as inline SVG, drawn on the server: no JavaScript library, nothing from a CDN.

A chart is a list of series over a time axis (dates or datetimes), with optional shaded bands
(detected surges) and labelled vertical markers. Colours and line styles come from CSS classes
(``static/dashboard.css``), never from inline ``style`` (the Content-Security-Policy forbids
inline styles). Every text in the SVG (series names, band labels, tooltips) goes through
:func:`markupsafe.escape`; the result is :class:`markupsafe.Markup`, safe to place in a template.
Points carry a ``<title>`` so a browser shows the value on hover without any script.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time

from markupsafe import Markup, escape

W, H = 720, 220
PAD_L, PAD_R, PAD_T, PAD_B = 56, 12, 14, 28

Stamp = date | datetime


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[Stamp, float | None]]  # None: a gap
    css: str = "s1"  # s1..s4, baseline, level
    dashed: bool = False
    step: bool = False  # hold each value until the next point (the threat level)


@dataclass(frozen=True)
class Band:
    start: Stamp
    end: Stamp
    label: str
    css: str = "surge"


@dataclass(frozen=True)
class Chart:
    title: str
    series: Sequence[Series]
    bands: Sequence[Band] = field(default_factory=tuple)
    y_label: str = ""
    y_min: float | None = 0.0
    y_max: float | None = None
    width: int = W
    height: int = H


def _t(x: Stamp) -> float:
    """Seconds since the epoch (naive = UTC), for dates and datetimes alike."""
    if not isinstance(x, datetime):
        x = datetime.combine(x, time())
    return (x - datetime(1970, 1, 1)).total_seconds() if x.tzinfo is None else x.timestamp()


def _fmt(v: float) -> str:
    if abs(v) >= 1_000_000:
        return f"{v / 1_000_000:.1f}M"
    if abs(v) >= 10_000:
        return f"{v / 1000:.0f}k"
    return f"{v:.0f}" if v == int(v) else f"{v:.2f}"


def _label(x: Stamp) -> str:
    if isinstance(x, datetime):
        return x.strftime("%m-%d %H:%M") if (x.hour or x.minute) else x.strftime("%Y-%m-%d")
    return x.isoformat()


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    mag = 10.0 ** len(str(int(v))) / 10
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * mag >= v:
            return m * mag
    return v


def render_chart(c: Chart) -> Markup:
    """The chart as an ``<svg>`` element (a figure with a caption is the template's business)."""
    xs = [_t(x) for s in c.series for x, _ in s.points] + [_t(b.start) for b in c.bands] + [_t(b.end) for b in c.bands]
    ys = [y for s in c.series for _, y in s.points if y is not None]
    title = escape(c.title)
    if not xs or not ys:
        return Markup('<svg class="chart" role="img" viewBox="0 0 {w} 40" width="{w}" height="40"><title>{t}</title>'
                      '<text x="8" y="24" class="empty">no data for this chart</text></svg>').format(w=c.width, t=title)
    x0, x1 = min(xs), max(xs)
    x1 = x1 if x1 > x0 else x0 + 1
    lo = c.y_min if c.y_min is not None else min(ys)
    hi = c.y_max if c.y_max is not None else _nice_max(max(ys))
    hi = hi if hi > lo else lo + 1
    pw, ph = c.width - PAD_L - PAD_R, c.height - PAD_T - PAD_B

    def px(t: float) -> float:
        return PAD_L + (t - x0) / (x1 - x0) * pw

    def py(v: float) -> float:
        return PAD_T + ph - (min(max(v, lo), hi) - lo) / (hi - lo) * ph

    out: list[str] = [
        f'<svg class="chart" role="img" viewBox="0 0 {c.width} {c.height}" width="{c.width}" height="{c.height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{title}</title>']
    for b in c.bands:
        a, z = px(_t(b.start)), px(_t(b.end))
        out.append(f'<rect class="{escape(b.css)}" x="{a:.1f}" y="{PAD_T}" width="{max(z - a, 2):.1f}" height="{ph}">'
                   f'<title>{escape(b.label)}</title></rect>')
    steps = int(hi - lo) if hi - lo <= 4 and hi == int(hi) and lo == int(lo) else 4  # small integer scales
    for i in range(steps + 1):  # horizontal grid with values
        v = lo + (hi - lo) * i / steps
        y = py(v)
        out.append(f'<line class="grid" x1="{PAD_L}" x2="{c.width - PAD_R}" y1="{y:.1f}" y2="{y:.1f}"/>'
                   f'<text class="tick" x="{PAD_L - 4}" y="{y + 4:.1f}" text-anchor="end">{escape(_fmt(v))}</text>')
    stamps = sorted({x for s in c.series for x, _ in s.points}, key=_t)
    for x in (stamps[0], stamps[len(stamps) // 2], stamps[-1]) if stamps else ():
        out.append(f'<text class="tick" x="{px(_t(x)):.1f}" y="{c.height - 8}" text-anchor="middle">'
                   f'{escape(_label(x))}</text>')
    if c.y_label:
        out.append(f'<text class="tick" x="4" y="{PAD_T - 2}">{escape(c.y_label)}</text>')
    for s in c.series:
        out.append(_polyline(s, px, py, c.width - PAD_R))
    legend_x = PAD_L + 6
    for s in c.series:
        out.append(f'<line class="{escape(s.css)}{" dashed" if s.dashed else ""}" x1="{legend_x}" x2="{legend_x + 16}" '
                   f'y1="{PAD_T + 6}" y2="{PAD_T + 6}"/><text class="legend" x="{legend_x + 20}" y="{PAD_T + 10}">'
                   f'{escape(s.name)}</text>')
        legend_x += 30 + 7 * len(s.name)
    out.append("</svg>")
    return Markup("".join(out))


def _polyline(s: Series, px: object, py: object, right: float) -> str:
    assert callable(px) and callable(py)
    css = escape(s.css) + (" dashed" if s.dashed else "")
    runs: list[list[tuple[float, float]]] = [[]]
    dots: list[str] = []
    pts = sorted(s.points, key=lambda p: _t(p[0]))
    for i, (x, y) in enumerate(pts):
        if y is None:
            runs.append([])
            continue
        X, Y = px(_t(x)), py(y)
        if s.step and runs[-1]:
            runs[-1].append((X, runs[-1][-1][1]))
        runs[-1].append((X, Y))
        if s.step and i == len(pts) - 1:
            runs[-1].append((right, Y))
        if len(pts) <= 120 and not s.dashed:
            dots.append(f'<circle class="{css} dot" cx="{X:.1f}" cy="{Y:.1f}" r="2.5">'
                        f'<title>{escape(s.name)} {escape(_label(x))}: {escape(_fmt(y))}</title></circle>')
    lines = "".join(f'<polyline class="{css}" fill="none" points="'
                    + " ".join(f"{X:.1f},{Y:.1f}" for X, Y in run) + '"/>' for run in runs if run)
    return lines + "".join(dots)


def sparkline(values: Sequence[float], *, width: int = 120, height: int = 24, label: str = "") -> Markup:
    """A tiny bar chart (events per hour of a sensor)."""
    if not values:
        return Markup("")
    hi = max(values) or 1.0
    bw = width / len(values)
    bars = "".join(f'<rect class="spark" x="{i * bw:.1f}" y="{height - v / hi * height:.1f}" '
                   f'width="{max(bw - 1, 1):.1f}" height="{v / hi * height:.1f}"/>' for i, v in enumerate(values))
    return Markup('<svg class="sparkline" role="img" viewBox="0 0 {w} {h}" width="{w}" height="{h}">'
                  '<title>{t}</title>').format(w=width, h=height, t=label) + Markup(bars + "</svg>")
