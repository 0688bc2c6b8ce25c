"""Chart geometry shared by the HTML (SVG) and PDF (reportlab.graphics) reports.

A chart is laid out once, here, into a few primitive shapes in a top-left coordinate
system; each renderer only translates those shapes. So the two formats draw the same
bars, lines, ticks and labels, and neither needs a browser or an image library.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Anchor = Literal["start", "middle", "end"]
GRID, AXIS, INK, MUTED = "#e4e7eb", "#9aa5b1", "#1f2933", "#5f6b7a"


@dataclass(frozen=True)
class Series:
    name: str
    values: tuple[float | None, ...]
    colour: str


@dataclass(frozen=True)
class Chart:
    """What a chart shows: categories along x, one bar series or several line series.

    ``ticks`` are the y-axis values with their labels (formatted by the report's
    formatter, so an axis reads like the tables); ``joined[i]`` says whether the line runs
    from point i to i + 1 (weeks months apart are not joined); ``reference`` is a dashed
    line such as the automation target.
    """

    kind: Literal["bar", "line"]
    title: str
    categories: tuple[str, ...]
    series: tuple[Series, ...]
    ticks: tuple[tuple[float, str], ...]
    bar_colours: tuple[str, ...] = ()
    value_labels: tuple[str, ...] = ()
    joined: tuple[bool, ...] = ()
    reference: tuple[float, str] | None = None


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float
    fill: str


@dataclass(frozen=True)
class Stroke:
    points: tuple[tuple[float, float], ...]
    colour: str
    width: float = 1.0
    dash: bool = False


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    r: float
    fill: str


@dataclass(frozen=True)
class Label:
    x: float
    y: float  # baseline
    text: str
    size: float = 7.5
    anchor: Anchor = "start"
    colour: str = INK
    bold: bool = False


Shape = Box | Stroke | Dot | Label


@dataclass(frozen=True)
class Sketch:
    width: float
    height: float
    title: str
    shapes: tuple[Shape, ...]


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round axis values (steps of 1, 2, 2.5 or 5 x 10^k) covering lo..hi and zero."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo <= 0:
        hi = lo + 1.0
    raw = (hi - lo) / target
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start, stop = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(i * step, 12) for i in range(start, stop + 1)]


def text_width(text: str, size: float) -> float:
    """A sans-serif text's width, estimated: good enough to keep labels apart."""
    return len(text) * size * 0.55


def layout(chart: Chart, width: float = 480, height: float = 210) -> Sketch:
    """The chart's shapes in a ``width`` x ``height`` box (origin top left)."""
    shapes: list[Shape] = [Label(0, 12, chart.title, size=10, bold=True)]
    top = 24.0
    if chart.kind == "line" or len(chart.series) > 1:
        x = 0.0
        for s in chart.series:
            shapes += [
                Box(x, top - 6, 10, 4, s.colour),
                Label(x + 13, top - 1, s.name, colour=MUTED),
            ]
            x += 13 + text_width(s.name, 7.5) + 14
        top += 12
    ticks = chart.ticks or tuple((t, f"{t:g}") for t in nice_ticks(0, 1))
    lo, hi = ticks[0][0], ticks[-1][0]
    left = max(text_width(label, 7) for _, label in ticks) + 8
    right, bottom = width - 8, height - 26
    pw, ph = right - left, bottom - top

    def y_of(v: float) -> float:
        return top + (hi - v) / (hi - lo) * ph if hi > lo else bottom

    for value, label in ticks:
        y = y_of(value)
        shapes.append(Stroke(((left, y), (right, y)), AXIS if value == 0 else GRID, 0.6))
        shapes.append(Label(left - 4, y + 2.5, label, size=7, anchor="end", colour=MUTED))
    n = max(len(chart.categories), 1)
    slot = pw / n
    centres = [left + slot * (i + 0.5) for i in range(len(chart.categories))]
    if chart.kind == "bar":
        shapes += _bars(chart, centres, slot, y_of)
    else:
        shapes += _lines(chart, centres, y_of)
    if chart.reference is not None:
        value, label = chart.reference
        y = y_of(value)
        shapes += [
            Stroke(((left, y), (right, y)), MUTED, 0.8, dash=True),
            Label(right, y - 3, label, size=7, anchor="end", colour=MUTED),
        ]
    every = max(
        1, math.ceil(max((text_width(c, 7) for c in chart.categories), default=0) * 1.15 / slot)
    )
    for i, (c, x) in enumerate(zip(chart.categories, centres, strict=True)):
        if i % every == 0:
            shapes.append(Label(x, bottom + 12, c, size=7, anchor="middle", colour=MUTED))
    return Sketch(width, height, chart.title, tuple(shapes))


def _bars(
    chart: Chart, centres: list[float], slot: float, y_of: Callable[[float], float]
) -> list[Shape]:
    out: list[Shape] = []
    values = chart.series[0].values if chart.series else ()
    w = min(slot * 0.6, 56.0)
    zero = y_of(0.0)
    show = bool(chart.value_labels) and max(text_width(t, 7) for t in chart.value_labels) < slot
    for i, (x, v) in enumerate(zip(centres, values, strict=True)):
        if v is None:
            continue
        colour = chart.bar_colours[i] if i < len(chart.bar_colours) else chart.series[0].colour
        y = y_of(v)
        out.append(Box(x - w / 2, min(y, zero), w, max(abs(zero - y), 0.5), colour))
        if show:
            out.append(
                Label(x, y - 3 if v >= 0 else y + 9, chart.value_labels[i], size=7, anchor="middle")
            )
    return out


def _lines(chart: Chart, centres: list[float], y_of: Callable[[float], float]) -> list[Shape]:
    out: list[Shape] = []
    for s in chart.series:
        run: list[tuple[float, float]] = []
        for i, (x, v) in enumerate(zip(centres, s.values, strict=True)):
            if v is None:
                continue
            point = (x, y_of(v))
            run.append(point)
            out.append(Dot(*point, 2.2, s.colour))
            if (
                i + 1 >= len(centres)
                or not (i < len(chart.joined) and chart.joined[i])
                or s.values[i + 1] is None
            ):
                if len(run) > 1:
                    out.insert(0, Stroke(tuple(run), s.colour, 1.6))
                run = []
    return out
