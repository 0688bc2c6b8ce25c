"""Portfolio: the manager's view of risk, decisions, automation, profit and trends.

Totals count every application; the week-by-week trends are those of the weekly batch
files, and applications typed in one by one are shown apart (see ``PortfolioSummary.weekly``).
"""

from __future__ import annotations

import streamlit as st

from finflow_app import state
from finflow_core.services.access import Action  # noqa: E402

wb = state.guard(Action.VIEW_PORTFOLIO)

import pandas as pd  # noqa: E402

from finflow_app import charts  # noqa: E402
from finflow_app import fmt as f  # noqa: E402
from finflow_core.services.portfolio import PortfolioFilter  # noqa: E402

cfg = wb.context.config
currency = cfg.economics.currency
currency_md = f.md(currency)  # the currency inside Markdown (metrics, tooltips): as written

st.title("Portfolio")
opts = wb.portfolio.filter_options()
weeks: list[str] = opts.weeks
batch_names = {b.id: f"{f.text(b.file_name, limit=80)} (week of {b.week_start})" for b in opts.batches}

with st.expander("Filters", expanded=True, icon=":material/filter_list:"):
    c = st.columns([2, 2, 1])
    week_from = week_to = None
    if len(weeks) > 1:
        week_from, week_to = c[0].select_slider("Weeks", options=weeks, value=(weeks[0], weeks[-1]),
                                                key="pf_weeks")
    elif weeks:
        c[0].caption(f"One week stored: {f.md(weeks[0])}")
    chosen_batches = c[1].multiselect("Batches", list(batch_names), format_func=batch_names.__getitem__,
                                      key="pf_batches", placeholder="All batches")
    group_by = c[2].selectbox("Break down by", list(cfg.segments), key="pf_group",
                              format_func=lambda s: cfg.column(s).display) if cfg.segments else None
    seg_cols = st.columns(max(1, len(cfg.segments)))
    seg_filter: dict[str, tuple[str, ...]] = {}
    for i, name in enumerate(cfg.segments):
        values = seg_cols[i].multiselect(f.md(cfg.column(name).display), opts.segments[name], key=f"pf_seg_{name}",
                                         placeholder="All")
        if values:
            seg_filter[name] = tuple(values)

filt = PortfolioFilter(
    week_from=week_from if week_from != (weeks[0] if weeks else None) else None,
    week_to=week_to if week_to != (weeks[-1] if weeks else None) else None,
    batch_ids=tuple(chosen_batches), segments=seg_filter,
)
summary = wb.portfolio.summary(filt, segment=group_by)
k = summary.kpis()

if k["applications"] == 0:
    st.info("No applications match these filters." if (chosen_batches or seg_filter or filt.week_from
                                                        or filt.week_to) else
            "No applications stored yet: an analyst uploads the first weekly batch.")
    st.stop()

c = st.columns(4)
c[0].metric("Applications", f.count(k["applications"]))
c[1].metric("Approved", f.count(k["approved"]), delta=f"{f.pct(k['approval_rate'])} of all", delta_color="off",
            delta_arrow="off")
c[2].metric("Declined", f.count(k["declined"]))
# the queue's own words: "Pending review" there counts pending cases only, so the tile that
# also holds the referred ones says so (the two pages agree, and the four tiles add up)
c[3].metric("Awaiting a decision", f.count(k["awaiting_decision"]),
            delta=f"{f.count(k['pending'])} pending review · {f.count(k['referred'])} referred",
            delta_color="off", delta_arrow="off")
c = st.columns(4)
target = k["automation_target"]
gap = f.points_delta(k["automation_rate"] - target)
c[0].metric("Automation rate", f.pct(k["automation_rate"]),
            delta=f"{gap} vs target {f.pct(target, 0)}" if gap else f"at the target {f.pct(target, 0)}",
            delta_color="normal" if gap else "off", delta_arrow="auto" if gap else "off")
c[1].metric("Expected profit", f.compact(k["expected_profit"], currency_md),
            help=f"{f.money(k['expected_profit'], currency_md)} expected over the loans' terms")
c[2].metric("Amount approved", f.compact(k["amount_approved"], currency_md),
            help=f.money(k["amount_approved"], currency_md))
c[3].metric("ROI on approved amount", f.pct(k["roi"]))

left, right = st.columns(2)
left.plotly_chart(charts.band_status_bar(summary.by("band", "status")), key="pf_bands")
right.plotly_chart(charts.probability_histogram(summary.histogram), key="pf_hist")


def weekly_table(frame: pd.DataFrame, key: str) -> None:
    shown = frame[["week_start", "applications", "approved", "declined", "pending", "referred",
                   "automation_rate", "expected_profit", "amount_approved", "roi"]].copy()
    for col in ("expected_profit", "amount_approved"):
        shown[col] = shown[col].round()
    config = {
        "week_start": st.column_config.TextColumn("week of"),
        **{c: f.count_column(c) for c in ("applications", "approved", "declined", "pending", "referred")},
        "automation_rate": f.percent_column("automation"), "roi": f.percent_column("ROI"),
        "expected_profit": f.money_column("expected profit", currency),
        "amount_approved": f.money_column("amount approved", currency),
    }
    st.dataframe(f.rounded(shown, config), hide_index=True, key=key, column_config=config)


weekly = summary.weekly()
typed = summary.weekly(typed_in=True)
st.subheader("Week by week")
if weekly.empty:
    st.info("No weekly batch matches these filters: only applications typed in one by one (below).")
else:
    if len(weekly) == 1:
        st.caption(f"One week selected ({f.md(weekly['week_start'].iloc[0])}): trends need more weeks.")
    left, right = st.columns(2)
    left.plotly_chart(charts.weekly_counts(weekly), key="pf_weekly_counts")
    right.plotly_chart(charts.weekly_rates(weekly, target), key="pf_weekly_rates")
    st.plotly_chart(charts.weekly_profit(weekly, currency), key="pf_weekly_profit")
    weekly_table(weekly, "pf_weekly_table")
if not typed.empty:
    st.markdown(f"**Typed in one by one:** {f.count(summary.typed_in_total)} application(s), counted in the "
                "totals above but not in the weekly trends (a handful of applications is no week's trend).")
    weekly_table(typed, "pf_typed_table")

segments = None
if group_by:
    st.subheader(f"By {f.md(cfg.column(group_by).display.lower())}")
    segments = summary.by("segment", "band")
    st.plotly_chart(charts.segment_bars(segments, cfg.column(group_by).display.lower()), key="pf_segments")

st.subheader("Downloads")
parts: list[str] = []
if filt.week_from or filt.week_to:
    parts.append(f"weeks {filt.week_from or weeks[0]} to {filt.week_to or weeks[-1]}")
if chosen_batches:
    parts.append("batches " + ", ".join(batch_names.get(b, b) for b in chosen_batches))
parts += [f"{cfg.column(n).display} in {', '.join(v)}" for n, v in seg_filter.items()]
filters_text = "; ".join(parts)


def report_args() -> dict[str, object]:
    runs = wb.drift.runs(limit=1) if wb.can(Action.VIEW_DRIFT) else []
    return {"drift_run": runs[0] if runs else None, "filters_text": filters_text,
            "generated_by": wb.actor.username, "tz": f.time_zone()}


def report_html() -> bytes:
    from finflow_core.reports import build_weekly_report

    return build_weekly_report(summary, cfg, **report_args()).encode("utf-8")  # type: ignore[arg-type]


def report_pdf() -> bytes:
    from finflow_core.reports import build_weekly_pdf

    return build_weekly_pdf(summary, cfg, **report_args())  # type: ignore[arg-type]


def csv_of(frame):  # type: ignore[no-untyped-def]
    """Spreadsheet-safe CSV, made only when the button is clicked."""
    def make() -> bytes:
        from finflow_core.services.batches import csv_bytes

        return csv_bytes(frame)
    return make


d = st.columns(4)
d[0].download_button("Weekly trends (CSV)", csv_of(weekly), file_name="portfolio_weekly.csv",
                     mime="text/csv", key="pf_dl_weekly", on_click="ignore", icon=":material/download:")
d[1].download_button("Breakdown shown (CSV)",
                     csv_of(summary.by(*(["segment"] if group_by else []), "week_start", "band", "status")),
                     file_name="portfolio_breakdown.csv", mime="text/csv", key="pf_dl_groups",
                     on_click="ignore", icon=":material/download:")
d[2].download_button("Weekly report (HTML)", report_html, file_name="finflow_weekly_report.html",
                     mime="text/html", key="pf_dl_report", on_click="ignore", icon=":material/summarize:",
                     type="primary")
d[3].download_button("Weekly report (PDF)", report_pdf, file_name="finflow_weekly_report.pdf",
                     mime="application/pdf", key="pf_dl_report_pdf", on_click="ignore",
                     icon=":material/picture_as_pdf:")
