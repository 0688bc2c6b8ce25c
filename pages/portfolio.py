"""Portfolio: the manager's view of risk, decisions, automation, profit and trends."""

from __future__ import annotations

import streamlit as st

from finflow_app import state
from finflow_core.services.access import Action  # noqa: E402

wb = state.guard(Action.VIEW_PORTFOLIO)

from finflow_app import charts  # noqa: E402
from finflow_app.fmt import compact, count, pct  # noqa: E402
from finflow_core.services.portfolio import PortfolioFilter  # noqa: E402

cfg = wb.context.config
currency = cfg.economics.currency

st.title("Portfolio")
opts = wb.portfolio.filter_options()
weeks: list[str] = opts.weeks
batch_names = {b.id: f"{b.file_name} (week of {b.week_start})" for b in opts.batches}

with st.expander("Filters", expanded=True, icon=":material/filter_list:"):
    c = st.columns([2, 2, 1])
    week_from = week_to = None
    if len(weeks) > 1:
        week_from, week_to = c[0].select_slider("Weeks", options=weeks, value=(weeks[0], weeks[-1]),
                                                key="pf_weeks")
    elif weeks:
        c[0].caption(f"One week stored: {weeks[0]}")
    chosen_batches = c[1].multiselect("Batches", list(batch_names), format_func=batch_names.__getitem__,
                                      key="pf_batches", placeholder="All batches")
    group_by = c[2].selectbox("Break down by", list(cfg.segments), key="pf_group",
                              format_func=lambda s: cfg.column(s).display) if cfg.segments else None
    seg_cols = st.columns(max(1, len(cfg.segments)))
    seg_filter: dict[str, tuple[str, ...]] = {}
    for i, name in enumerate(cfg.segments):
        values = seg_cols[i].multiselect(cfg.column(name).display, opts.segments[name], key=f"pf_seg_{name}",
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
c[0].metric("Applications", count(k["applications"]))
c[1].metric("Approved", count(k["approved"]), delta=f"{pct(k['approval_rate'])} of all", delta_color="off", delta_arrow="off")
c[2].metric("Declined", count(k["declined"]))
c[3].metric("Pending review", count(k["pending"] + k["referred"]),
            delta=f"{count(k['referred'])} referred", delta_color="off", delta_arrow="off")
c = st.columns(4)
target = k["automation_target"]
c[0].metric("Automation rate", pct(k["automation_rate"]),
            delta=f"{(k['automation_rate'] - target) * 100:+.1f} pts vs target {pct(target, 0)}")
c[1].metric("Expected profit", compact(k["expected_profit"], currency))
c[2].metric("Amount approved", compact(k["amount_approved"], currency))
c[3].metric("ROI on approved amount", pct(k["roi"]))

left, right = st.columns(2)
left.plotly_chart(charts.band_status_bar(summary.by("band", "status")), key="pf_bands")
right.plotly_chart(charts.probability_histogram(summary.histogram), key="pf_hist")

weekly = summary.weekly()
st.subheader("Week by week")
left, right = st.columns(2)
left.plotly_chart(charts.weekly_counts(weekly), key="pf_weekly_counts")
right.plotly_chart(charts.weekly_rates(weekly, target), key="pf_weekly_rates")
st.plotly_chart(charts.weekly_profit(weekly, currency), key="pf_weekly_profit")
st.dataframe(weekly, hide_index=True, key="pf_weekly_table", column_config={
    "automation_rate": st.column_config.NumberColumn("automation", format="percent"),
    "roi": st.column_config.NumberColumn("ROI", format="percent"),
    "expected_profit": st.column_config.NumberColumn(f"expected profit ({currency})", format="localized"),
    "amount_approved": st.column_config.NumberColumn(f"amount approved ({currency})", format="localized"),
})

segments = None
if group_by:
    st.subheader(f"By {cfg.column(group_by).display.lower()}")
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


def report_html() -> bytes:
    from finflow_core.reports import build_weekly_report

    runs = wb.drift.runs(limit=1) if wb.can(Action.VIEW_DRIFT) else []
    return build_weekly_report(summary, cfg, drift_run=runs[0] if runs else None, filters_text=filters_text,
                               generated_by=wb.actor.username).encode("utf-8")


def csv_of(frame):  # type: ignore[no-untyped-def]
    """Spreadsheet-safe CSV, made only when the button is clicked."""
    def make() -> bytes:
        from finflow_core.services.batches import csv_bytes

        return csv_bytes(frame)
    return make


d = st.columns(3)
d[0].download_button("Weekly trends (CSV)", csv_of(weekly), file_name="portfolio_weekly.csv",
                     mime="text/csv", key="pf_dl_weekly", on_click="ignore", icon=":material/download:")
d[1].download_button("Breakdown shown (CSV)",
                     csv_of(summary.by(*(["segment"] if group_by else []), "week_start", "band", "status")),
                     file_name="portfolio_breakdown.csv", mime="text/csv", key="pf_dl_groups",
                     on_click="ignore", icon=":material/download:")
d[2].download_button("Weekly report (HTML)", report_html, file_name="finflow_weekly_report.html",
                     mime="text/html", key="pf_dl_report", on_click="ignore", icon=":material/summarize:",
                     type="primary")
