"""Everything the manager's report shows, computed and worded once.

:func:`build_figures` turns the portfolio figures (and the latest drift run) into one plain
:class:`~finflow_core.reports.report_blocks.ReportFigures`: every cell already formatted by :mod:`finflow_core.formatting`, every
chart already given its values and axis labels. The HTML and PDF renderers only lay it out,
in the order of :meth:`ReportFigures.sections`, so the two formats cannot disagree. Strings
that came from uploaded files (batch names, segment values) are cleaned of control and
bidi characters and clipped here; each renderer escapes them for its own format.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from finflow_core.formatting import Formatter
from finflow_core.lending.config import Config
from finflow_core.lending.terms import BANDS, DriftStatus
from finflow_core.reports.drawing import Chart, Series, nice_ticks
from finflow_core.reports.report_blocks import TITLE, Block, Note, ReportFigures, Status, Table

if TYPE_CHECKING:  # the report reads a summary; it does not need the store to do so
    from finflow_core.services.portfolio import PortfolioSummary

BAND_LABELS = {
    "low": "Low risk (auto-approve)",
    "medium": "Medium (manual review)",
    "high": "High risk (auto-decline)",
}
BAND_COLOURS = {"low": "#3a8d5c", "medium": "#d39b2a", "high": "#c2473d"}
STATUS_COLOURS = {
    DriftStatus.STABLE: "#2e7d32",
    DriftStatus.WATCH: "#b26a00",
    DriftStatus.ALERT: "#c62828",
}
BLUE, GREEN, RED, GREY = "#4a6fa5", "#3a8d5c", "#c2473d", "#5f6b7a"
USER_TEXT = 80  # characters of an uploaded name shown; the rest is marked with "…"


def build_figures(
    summary: PortfolioSummary,
    config: Config,
    *,
    drift_run: Any = None,
    filters_text: str = "",
    generated_by: str = "",
    generated_at: datetime | None = None,
    tz: str = "UTC",
    title: str = TITLE,
) -> ReportFigures:
    """The report's figures; ``tz`` is the installation's time zone for every time shown."""
    f = Formatter(config.economics.currency, tz)
    at = generated_at or datetime.now(UTC)
    meta = (
        f"Dataset {f.text(config.dataset_name, limit=USER_TEXT)} · generated "
        f"{f.when(at, zone_name=True)}"
        + (f" by {f.text(generated_by, limit=USER_TEXT)}" if generated_by else ""),
        f"Filters: {f.text(filters_text, limit=400)}"
        if filters_text.strip()
        else "Filters: none (whole portfolio)",
    )
    weekly = summary.weekly().sort_values("week_start")
    bands, band_chart = _bands(summary, f)
    histogram, histogram_chart = _histogram(summary, f)
    return ReportFigures(
        title=f.text(title, limit=200),
        meta=meta,
        kpis=_kpis(summary.kpis(), f),
        bands=bands,
        band_chart=band_chart,
        histogram=histogram,
        histogram_chart=histogram_chart,
        weekly=_weekly_table(weekly, f),
        weekly_charts=_weekly_charts(weekly, summary, f),
        segment_heading=(
            f"By {config.column(summary.segment).display.lower()}" if summary.segment else None
        ),
        segments=_segments(summary, f),
        drift=_drift(drift_run, config, f),
    )


# -- sections -----------------------------------------------------------------------------------


def _kpis(k: dict[str, float], f: Formatter) -> Table:
    rate, target = k["automation_rate"], k["automation_target"]
    versus = "meets" if rate >= target else "below"
    rows = (
        ("Applications", f.count(k["applications"])),
        ("Approved", f.count(k["approved"])),
        ("Declined", f.count(k["declined"])),
        ("Pending review", f.count(k["pending"])),
        ("Referred", f.count(k["referred"])),
        (
            "Automation rate",
            f"{f.percent(rate)} ({versus} target {f.percent(target)}, {f.points(rate - target)})",
        ),
        ("Approval rate", f.percent(k["approval_rate"])),
        ("Expected profit", f.money(k["expected_profit"])),
        ("Amount approved", f.money(k["amount_approved"])),
        ("Return on amount approved (ROI)", f.percent(k["roi"])),
    )
    return Table(("Figure", "Value"), rows)


def _bands(summary: PortfolioSummary, f: Formatter) -> tuple[Table, Chart | None]:
    by_band = summary.by("band")
    counts = {str(r.band): int(r.n) for r in by_band.itertuples(index=False)}
    amounts = {str(r.band): float(r.amount) for r in by_band.itertuples(index=False)}
    total = sum(counts.values())
    shares = {b: counts.get(b, 0) / total if total else 0.0 for b in BANDS}
    rows = tuple(
        (
            BAND_LABELS[b],
            f.count(counts.get(b, 0)),
            f.percent(shares[b]),
            f.money(amounts.get(b, 0.0)),
        )
        for b in BANDS
    )
    table = Table(("Band", "Applications", "Share", "Amount requested"), rows)
    if not total:
        return table, None
    values = [counts.get(b, 0) for b in BANDS]
    chart = Chart(
        "bar",
        "Applications by risk band",
        tuple(BAND_LABELS[b] for b in BANDS),
        (Series("applications", tuple(float(v) for v in values), BLUE),),
        _ticks(values, f.count),
        bar_colours=tuple(BAND_COLOURS[b] for b in BANDS),
        value_labels=tuple(f"{f.count(counts.get(b, 0))} ({f.percent(shares[b])})" for b in BANDS),
    )
    return table, chart


def _histogram(summary: PortfolioSummary, f: Formatter) -> tuple[Table | None, Chart | None]:
    h = summary.histogram
    total = int(h["n"].sum()) if not h.empty else 0
    if total == 0:
        return None, None
    ranges = [
        f"{f.percent(a, 0)} – {f.percent(b, 0)}"
        for a, b in zip(h["bin_start"], h["bin_end"], strict=True)
    ]
    counts = [int(n) for n in h["n"]]
    rows = tuple(
        (r, f.count(n), f.percent(n / total)) for r, n in zip(ranges, counts, strict=True) if n
    )
    chart = Chart(
        "bar",
        "Applications by probability of default",
        tuple(f.percent(a, 0) for a in h["bin_start"]),
        (Series("applications", tuple(float(n) for n in counts), BLUE),),
        _ticks(counts, f.count),
    )
    return Table(("Probability of default", "Applications", "Share"), rows), chart


def _weekly_table(w: Any, f: Formatter) -> Table | None:
    if w.empty:
        return None
    rows = tuple(
        (
            f.day(r.week_start),
            f.count(r.applications),
            f.count(r.approved),
            f.count(r.declined),
            f.count(r.pending + r.referred),
            f.percent(r.automation_rate),
            f.money(r.expected_profit),
            f.percent(r.roi),
        )
        for r in w.itertuples(index=False)
    )
    return Table(
        (
            "Week of",
            "Applications",
            "Approved",
            "Declined",
            "Pending / referred",
            "Automation",
            "Expected profit",
            "ROI",
        ),
        rows,
    )


def _weekly_charts(w: Any, summary: PortfolioSummary, f: Formatter) -> tuple[Chart, ...]:
    if w.empty:
        return ()
    weeks = tuple(f.day(d) for d in w["week_start"])
    joined = tuple(
        _a_week_apart(a, b)
        for a, b in zip(w["week_start"], list(w["week_start"])[1:], strict=False)
    )

    def col(name: str) -> tuple[float | None, ...]:
        return tuple(float(v) if _finite(v) else None for v in w[name])

    counts = (
        Series("applications", col("applications"), BLUE),
        Series("approved", col("approved"), GREEN),
        Series("declined", col("declined"), RED),
    )
    all_counts = [v for s in counts for v in s.values if v is not None]
    target = float(summary.automation_target)
    rates = (
        Series("automation rate", col("automation_rate"), BLUE),
        Series("ROI", col("roi"), GREY),
    )
    all_rates = [v for s in rates for v in s.values if v is not None] + [target]
    profit = col("expected_profit")
    money_ticks = _ticks([v or 0.0 for v in profit], f.compact)
    return (
        Chart(
            "line",
            "Applications and decisions by week",
            weeks,
            counts,
            _ticks(all_counts, f.count),
            joined=joined,
        ),
        Chart(
            "line",
            "Automation rate and ROI by week",
            weeks,
            rates,
            _ticks(all_rates, lambda v: f.percent(v, 0)),
            joined=joined,
            reference=(target, f"automation target {f.percent(target, 0)}"),
        ),
        Chart(
            "bar",
            "Expected profit by week",
            weeks,
            (Series("expected profit", profit, BLUE),),
            money_ticks,
            bar_colours=tuple(RED if (v or 0) < 0 else BLUE for v in profit),
            value_labels=tuple(f.compact(v) for v in profit),
        ),
    )


def _segments(summary: PortfolioSummary, f: Formatter) -> Table | None:
    if not summary.segment or summary.total == 0:
        return None
    per = summary.by("segment", "band")
    totals = summary.by("segment")
    n_all = summary.total
    by_band: dict[Any, dict[str, int]] = {}
    for r in per.itertuples(index=False):
        by_band.setdefault(_key(r.segment), {})[str(r.band)] = int(r.n)
    rows = []
    for r in sorted(totals.itertuples(index=False), key=lambda r: (-int(r.n), f.text(r.segment))):
        bands = by_band.get(_key(r.segment), {})
        n = int(r.n)
        auto = (bands.get("low", 0) + bands.get("high", 0)) / n if n else 0.0
        name = "(none)" if _key(r.segment) is None else f.text(r.segment, limit=USER_TEXT)
        rows.append(
            (
                name,
                f.count(n),
                f.percent(n / n_all),
                *(f.count(bands.get(b, 0)) for b in BANDS),
                f.percent(auto),
                f.money(r.expected_profit),
            )
        )
    return Table(
        (
            "Segment",
            "Applications",
            "Share",
            "Low",
            "Medium",
            "High",
            "Automation",
            "Expected profit",
        ),
        tuple(rows),
    )


def _drift(run: Any, config: Config, f: Formatter) -> tuple[Block, ...]:
    if run is None:
        return (Note("No drift measurement yet: no batch has been scored."),)
    from finflow_core.lending.drift import ADVICE

    if dataclasses.is_dataclass(run):  # a stored DriftRun
        run = dataclasses.asdict(run)

    status = str(run.get("status") or DriftStatus.STABLE)
    watch = config.monitoring.psi_watch
    features = {str(k): float(v) for k, v in (run.get("features") or {}).items() if _finite(v)}
    flagged = sorted(((k, v) for k, v in features.items() if v >= watch), key=lambda t: -t[1])[:8]
    name = f.text(run.get("file_name") or run.get("batch_id"), limit=USER_TEXT)
    headline = (
        f"latest batch {name} (week of {f.day(run.get('week_start'))}), "
        f"score PSI {f.number(run.get('score_psi'), 3)}"
    )
    if run.get("computed_at"):
        headline += f", measured {f.when(run.get('computed_at'), zone_name=True)}"
    advice = ADVICE.get(status) or (
        "Too few rows in the batch for PSI to mean anything."
        if status == DriftStatus.INSUFFICIENT
        else ""
    )
    blocks: list[Block] = [
        Status(f.text(status).replace("_", " ").upper(), STATUS_COLOURS.get(status, GREY), headline)
    ]
    if advice:
        blocks.append(Note(advice))
    if flagged:
        blocks.append(
            Table(
                (f"Feature above the watch line ({f.number(watch, 2)})", "PSI"),
                tuple((_label(config, k), f.number(v, 3)) for k, v in flagged),
            )
        )
    else:
        blocks.append(Note(f"No feature above the watch line ({f.number(watch, 2)})."))
    return tuple(blocks)


# -- helpers ------------------------------------------------------------------------------------


def _ticks(values: Any, label: Any) -> tuple[tuple[float, str], ...]:
    finite = [float(v) for v in values if _finite(v)]
    ticks = nice_ticks(min(finite, default=0.0), max(finite, default=1.0))
    return tuple((t, label(t)) for t in ticks)


def _finite(v: Any) -> bool:
    try:
        return v is not None and not isinstance(v, bool) and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _key(v: Any) -> Any:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) or v == "" else v


def _a_week_apart(a: Any, b: Any) -> bool:
    try:
        return date.fromisoformat(str(b)[:10]) - date.fromisoformat(str(a)[:10]) == timedelta(
            days=7
        )
    except ValueError:
        return False


def _label(config: Config, name: str) -> str:
    if name == "score":
        return "Score"
    try:
        return config.feature_display(name)
    except KeyError:
        return name
