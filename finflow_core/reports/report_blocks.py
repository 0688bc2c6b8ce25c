"""The shape of the manager's report: what it holds, section by section, already worded.

Declared apart from :mod:`finflow_core.reports.figures` (which computes it) and from the
HTML and PDF renderers (which lay it out), so the two formats read one structure and cannot
disagree on what the report says.
"""

from __future__ import annotations

from dataclasses import dataclass

from finflow_core.reports.drawing import Chart

TITLE = "FinFlow weekly portfolio report"
NO_APPLICATIONS = "No applications in the selection."
FOOTNOTE = (
    "Expected profit and ROI are model expectations (probability-weighted), not realised results."
)


@dataclass(frozen=True)
class Table:
    """Rows of text as shown; the first column reads left, the others are numbers."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Note:
    text: str


@dataclass(frozen=True)
class Status:
    """The drift verdict: a coloured label and one line about the batch it is for."""

    label: str
    colour: str
    headline: str


Block = Table | Chart | Note | Status


@dataclass(frozen=True)
class Section:
    heading: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class ReportFigures:
    title: str
    meta: tuple[str, ...]
    kpis: Table
    bands: Table
    band_chart: Chart | None
    histogram: Table | None
    histogram_chart: Chart | None
    weekly: Table | None
    weekly_charts: tuple[Chart, ...]
    segment_heading: str | None
    segments: Table | None
    drift: tuple[Block, ...]
    footnote: str = FOOTNOTE

    @property
    def kpi_values(self) -> dict[str, str]:
        """Figure name -> the text shown for it (what both formats must carry)."""
        return dict(self.kpis.rows)

    def sections(self) -> tuple[Section, ...]:
        """The report's sections in order: the one layout both renderers follow."""
        none = (Note(NO_APPLICATIONS),)
        out = [
            Section("Key figures", (self.kpis,)),
            Section("Risk distribution", tuple(b for b in (self.band_chart, self.bands) if b)),
            Section(
                "Probability of default",
                tuple(b for b in (self.histogram_chart, self.histogram) if b) or none,
            ),
            Section("Week by week", (*self.weekly_charts, self.weekly) if self.weekly else none),
        ]
        if self.segment_heading:
            out.append(Section(self.segment_heading, (self.segments,) if self.segments else none))
        out.append(Section("Population drift", self.drift))
        return tuple(out)
