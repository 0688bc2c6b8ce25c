"""The manager's weekly report as one self-contained HTML page to send on.

It renders a :class:`~finflow_core.reports.report_blocks.ReportFigures` and nothing else:
inline styles only, charts as inline SVG (no scripts, no external fonts, images or links),
so it opens the same in any browser, offline. Every value is HTML-escaped here, whatever
the figures hold (batch names and segments come from uploaded files).
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import TYPE_CHECKING, Any

from finflow_core.lending.config import Config
from finflow_core.reports.drawing import Box, Chart, Dot, Label, Sketch, Stroke, layout
from finflow_core.reports.figures import build_figures
from finflow_core.reports.report_blocks import TITLE, Note, ReportFigures, Status, Table

if TYPE_CHECKING:
    from finflow_core.services.portfolio import PortfolioSummary

_CSS = """
body{font-family:Arial,Helvetica,sans-serif;color:#1f2933;max-width:960px;margin:24px auto;
padding:0 16px}
h1{font-size:22px;margin-bottom:4px}
h2{font-size:17px;margin-top:28px;border-bottom:1px solid #d9dee3;padding-bottom:4px}
.meta{color:#5f6b7a;font-size:13px}
table{border-collapse:collapse;width:100%;font-size:13px;margin-top:8px}
th,td{border-bottom:1px solid #e4e7eb;padding:5px 8px;text-align:right}
th:first-child,td:first-child{text-align:left;overflow-wrap:anywhere}
th{background:#f4f6f8}
.kpis td:last-child{font-weight:bold}
.status{display:inline-block;padding:4px 10px;border-radius:4px;color:#fff;font-weight:bold}
.note{font-size:13px;color:#3e4c59}
svg{display:block;margin:12px 0;width:100%;max-width:720px;height:auto}
"""


def render_html(figures: ReportFigures) -> str:
    """The report as one HTML document (a string)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(figures.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(figures.title)}</h1>",
        f'<p class="meta">{"<br>".join(_e(line) for line in figures.meta)}</p>',
    ]
    for section in figures.sections():
        parts.append(f"<h2>{_e(section.heading)}</h2>")
        parts += [_block(b, kpis=b is figures.kpis) for b in section.blocks]
    parts += [f'<p class="meta">{_e(figures.footnote)}</p>', "</body></html>"]
    return "\n".join(parts)


def build_weekly_report(
    summary: PortfolioSummary,
    config: Config,
    *,
    drift_run: dict[str, Any] | None = None,
    filters_text: str = "",
    generated_by: str = "",
    generated_at: datetime | None = None,
    tz: str = "UTC",
    title: str = TITLE,
) -> str:
    """Figures and HTML in one call (what the portfolio page has always called)."""
    return render_html(
        build_figures(
            summary,
            config,
            drift_run=drift_run,
            filters_text=filters_text,
            generated_by=generated_by,
            generated_at=generated_at,
            tz=tz,
            title=title,
        )
    )


def _block(block: object, *, kpis: bool = False) -> str:
    if isinstance(block, Table):
        return _table(block, kpis)
    if isinstance(block, Chart):
        return svg(layout(block))
    if isinstance(block, Status):
        return (
            f'<p><span class="status" style="background:{_e(block.colour)}">{_e(block.label)}'
            f"</span> {_e(block.headline)}</p>"
        )
    if isinstance(block, Note):
        return f'<p class="note">{_e(block.text)}</p>'
    raise TypeError(f"no HTML for {type(block).__name__}")


def _table(t: Table, kpis: bool) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in t.header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in t.rows)
    cls = ' class="kpis"' if kpis else ""
    return f"<table{cls}><tr>{head}</tr>{body}</table>"


def svg(sketch: Sketch) -> str:
    """A laid-out chart as inline SVG: shapes and escaped text only."""
    w, h = _n(sketch.width), _n(sketch.height)
    out = [
        f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
        f'aria-label="{_e(sketch.title)}" font-family="Arial,Helvetica,sans-serif">'
    ]
    for s in sketch.shapes:
        if isinstance(s, Box):
            out.append(
                f'<rect x="{_n(s.x)}" y="{_n(s.y)}" width="{_n(s.w)}" height="{_n(s.h)}" '
                f'fill="{_e(s.fill)}"/>'
            )
        elif isinstance(s, Stroke):
            pts = " ".join(f"{_n(x)},{_n(y)}" for x, y in s.points)
            dash = ' stroke-dasharray="4 3"' if s.dash else ""
            out.append(
                f'<polyline points="{pts}" fill="none" stroke="{_e(s.colour)}" '
                f'stroke-width="{_n(s.width)}"{dash}/>'
            )
        elif isinstance(s, Dot):
            out.append(f'<circle cx="{_n(s.x)}" cy="{_n(s.y)}" r="{_n(s.r)}" fill="{_e(s.fill)}"/>')
        elif isinstance(s, Label):
            weight = ' font-weight="bold"' if s.bold else ""
            out.append(
                f'<text x="{_n(s.x)}" y="{_n(s.y)}" font-size="{_n(s.size)}" '
                f'fill="{_e(s.colour)}" text-anchor="{s.anchor}"{weight}>{_e(s.text)}</text>'
            )
    out.append("</svg>")
    return "".join(out)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _n(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")
