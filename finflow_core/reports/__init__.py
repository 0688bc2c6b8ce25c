"""The manager's weekly report, as HTML and as PDF, from one set of figures.

``build_figures(summary, config, ...)`` computes and words everything once;
``render_html(figures)`` and ``render_pdf(figures)`` lay the same object out, so the two
formats cannot disagree. ``build_weekly_report`` / ``build_weekly_pdf`` do both steps.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from finflow_core.lending.config import Config
from finflow_core.reports.figures import build_figures
from finflow_core.reports.html import build_weekly_report, render_html
from finflow_core.reports.report_blocks import TITLE, ReportFigures

if TYPE_CHECKING:
    from finflow_core.services.portfolio import PortfolioSummary

__all__ = [
    "ReportFigures",
    "build_figures",
    "build_weekly_pdf",
    "build_weekly_report",
    "render_html",
    "render_pdf",
]


def render_pdf(figures: ReportFigures, **options: Any) -> bytes:
    """The PDF renderer, imported on first use (reportlab is only loaded for a PDF)."""
    from finflow_core.reports.pdf import render_pdf as render

    return render(figures, **options)


def build_weekly_pdf(
    summary: PortfolioSummary,
    config: Config,
    *,
    drift_run: dict[str, Any] | None = None,
    filters_text: str = "",
    generated_by: str = "",
    generated_at: datetime | None = None,
    tz: str = "UTC",
    title: str = TITLE,
) -> bytes:
    """Figures and PDF in one call, with the same arguments as ``build_weekly_report``."""
    return render_pdf(
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
