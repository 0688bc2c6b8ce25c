"""Performance: how decisions turned out (outcomes, vintages, champion-challenger, fairness)."""

from __future__ import annotations

import streamlit as st

from finflow_app import state
from finflow_core.services.access import Action  # noqa: E402

wb = state.guard(Action.VIEW_PERFORMANCE)

from finflow_app import fmt as f  # noqa: E402
from finflow_app import performance_tables as tables  # noqa: E402
from finflow_core.errors import FinFlowError  # noqa: E402
from finflow_core.services.outcomes import OutcomePreview  # noqa: E402
from finflow_core.services.performance import APPROVED_ONLY, FAIRNESS_NOTE, VintageKey  # noqa: E402

cfg = wb.context.config
PREVIEW_KEY = "pf_preview"  # (file key, OutcomePreview) of the file in the uploader
LOADED_KEY = "pf_loaded"  # file key -> the OutcomeLoad this session recorded
SPEC = cfg.outcomes  # the lender's outcome-file layout (config outcomes:)
ISSUE_SHOWN = {"row_number": "row", "line": "line", "application_id": "application id", "column": "column",
               "rule": "rule", "value": "value", "message": "what is wrong"}


def label(name: str) -> str:
    try:
        return cfg.feature_display(name)
    except KeyError:
        return name


def table(frame_and_config: tuple, key: str) -> None:
    frame, config = frame_and_config
    st.dataframe(f.rounded(frame, config), hide_index=True, key=key, column_config=config)


# -- (a) outcomes ------------------------------------------------------------------------------

def show_issues(preview: OutcomePreview) -> None:
    rules = f.md(preview.rule_summary())
    st.error(f"{f.count(len(preview.issues))} issue(s) in {f.md(preview.file.file.name)} ({rules}): "
             "nothing can be stored from this file until they are fixed.", icon=":material/block:")
    if "already_recorded" in preview.rule_counts():
        st.caption("An outcome already recorded changes only as a correction: give the reason above "
                   "and upload the file again.")
    shown = preview.issues[list(ISSUE_SHOWN)].head(500)
    shown = shown.assign(**{c: f.text_cells(shown[c]) for c in ISSUE_SHOWN if c not in ("row_number", "line")})
    st.dataframe(shown.rename(columns=ISSUE_SHOWN), hide_index=True, key="pf_issues",
                 column_config={"row": f.count_column("row"), "line": f.count_column("line")})


def outcome_section() -> None:
    st.subheader("Load outcomes")
    st.caption(f"A CSV with one funded loan per row: {f.md(', '.join(SPEC.required))} (optional "
               f"{f.md(', '.join(SPEC.optional))}). Nothing is stored until you press Load; a file with any "
               "issue stores nothing.")
    file = st.file_uploader("Outcome file (CSV)", key="pf_outcome_file")  # any type: FinFlow says what is wrong
    reason = st.text_input("Correction reason (only to change outcomes already recorded)", key="pf_reason",
                           max_chars=500)
    if file is None:
        return
    data = file.getvalue()
    file_key = (file.name, len(data), file.file_id)
    loaded = st.session_state.get(LOADED_KEY, {})
    if file_key in loaded:
        done = loaded[file_key]
        st.success(f"Loaded {f.count(done.rows)} outcome(s) from {f.md(done.file_name)}: "
                   f"{f.count(done.defaults)} default(s), {f.count(done.corrections)} correction(s).")
        return
    cached = st.session_state.get(PREVIEW_KEY)
    if cached is not None and cached[0] == (file_key, reason):
        preview: OutcomePreview = cached[1]
    else:
        try:
            preview = wb.outcomes.preview(data, name=file.name, correction_reason=reason)
        except FinFlowError as exc:
            st.error(f"File rejected, nothing was stored: {f.md(exc.message)}", icon=":material/block:")
            return
        st.session_state[PREVIEW_KEY] = ((file_key, reason), preview)
    c = st.columns(4)
    c[0].metric("Rows in file", f.count(preview.file.rows_in))
    c[1].metric("Ready to record", f.count(len(preview.linked)))
    c[2].metric("Issues", f.count(len(preview.issues)))
    c[3].metric("Corrections", f.count(preview.corrections))
    if not preview.ok:
        show_issues(preview)
        return
    if not st.button(f"Load {f.count(len(preview.linked))} outcome(s)", type="primary", key="pf_load",
                     icon=":material/upload:"):
        return
    try:
        done = wb.outcomes.load(preview)
    except FinFlowError as exc:
        state.error(exc)
        return
    st.session_state[LOADED_KEY] = {**loaded, file_key: done}
    st.session_state.pop(PREVIEW_KEY, None)
    st.success(f"Loaded {f.count(done.rows)} outcome(s) from {f.md(done.file_name)}: "
               f"{f.count(done.defaults)} default(s), {f.count(done.corrections)} correction(s).")


# -- (b) vintages ------------------------------------------------------------------------------

def vintage_section() -> None:
    st.subheader("Vintages: expected against observed")
    by = st.segmented_control("Vintage", [VintageKey.BATCH, VintageKey.MONTH], default=VintageKey.BATCH,
                              format_func=lambda k: "by batch" if k == VintageKey.BATCH else "by month",
                              key="pf_by") or VintageKey.BATCH
    report = wb.performance.vintages(by)
    if not report.vintages:
        st.info("No batch stored yet: performance is measured on stored batches once their outcomes "
                "are loaded.")
        return
    if report.outcomes == 0:
        who = "load a file of outcomes above" if wb.can(Action.LOAD_OUTCOMES) else "an analyst loads a file of outcomes"
        st.info(f"No outcomes loaded yet: {who} ({f.md(', '.join(SPEC.required))}) to compare "
                "observed with expected default rates.", icon=":material/hourglass_empty:")
    table(tables.vintage_table(report.vintages), "pf_vintages")
    st.caption(tables.LIGHT_LEGEND)
    if report.reference_auc is not None:
        st.caption(f"The champion's out-of-fold AUC at training: {f.number(report.reference_auc, 3)}.")
    for a in report.alerts:
        st.error(f"{f.md(a.vintage)} ({f.md(a.kind)}): {f.md(a.message)}", icon=":material/warning:")
    if report.outcomes and not report.alerts:
        st.success("No performance alert: ranking and calibration are within the limits.")
    for note in report.notes:
        if note != APPROVED_ONLY:  # said once, under the page title
            st.caption(f.md(note))


# -- (c) champion-challenger -------------------------------------------------------------------

def compare_split(split_ids: list[int]) -> None:
    pick = st.selectbox("Compare the arms of split test", split_ids, format_func=lambda i: f"test {i}",
                        key="pf_compare")
    try:
        comp = wb.experiments.compare(pick)
    except FinFlowError as exc:
        state.error(exc)
        return
    table(tables.arms_table(comp), "pf_arms")
    if comp.default_rate_difference is None:
        st.caption("No outcome for both arms yet: the default rates are compared once outcomes are loaded.")
        return
    verdict = ("the difference is significant (the interval excludes zero)" if comp.conclusive
               else "not conclusive yet (the interval includes zero)")
    st.caption(f"Challenger minus champion default rate: {f.points(comp.default_rate_difference)} "
               f"(95% interval {tables.interval(comp.difference_interval)}): {verdict}.")


def manage_tests(running: list) -> None:
    champion = wb.models.champion()
    challengers = [v.version for v in wb.models.versions() if champion is None or v.version != champion.version]
    with st.expander("Start a test", icon=":material/science:"):
        if not challengers:
            st.caption("No challenger to test: register another model version first (Model & strategy).")
        else:
            with st.form("pf_start", enter_to_submit=False):
                version = st.selectbox("Challenger version", challengers, key="pf_start_version")
                kind = st.radio("Kind", ["split", "shadow"], key="pf_start_kind", horizontal=True,
                                help="Split: the challenger decides its share of each batch. Shadow: it "
                                     "scores every application beside the champion, which decides.")
                share = st.slider("Challenger share (split)", 5, 50, 10, step=5, format="%d%%",
                                  key="pf_start_share")
                why = st.text_area("Reason (recorded in the audit trail)", key="pf_start_reason", max_chars=500)
                if st.form_submit_button("Start the test", type="primary"):
                    state.act(lambda: wb.experiments.start(version, kind=kind, share=share / 100, reason=why),
                              f"Started a {kind} test of {f.md(version)}.")
    if not running:
        return
    with st.expander("Stop a test", icon=":material/stop_circle:"), st.form("pf_stop", enter_to_submit=False):
        pick = st.selectbox("Running test", [r.id for r in running], key="pf_stop_id",
                            format_func=lambda i: f"test {i}")
        why = st.text_area("Reason (recorded in the audit trail)", key="pf_stop_reason", max_chars=500)
        if st.form_submit_button("Stop the test"):
            state.act(lambda: wb.experiments.stop(pick, reason=why), f"Stopped test {pick}.")


def experiment_section() -> None:
    st.subheader("Champion against challenger")
    history = wb.experiments.history()
    running = [r for r in history if r.running]
    if not history:
        who = "start one below" if wb.can(Action.MANAGE_EXPERIMENTS) else "a manager starts one"
        st.info(f"No champion-challenger test yet: {who} to decide a share of each batch with a "
                "challenger model and compare the arms.")
    else:
        st.caption(f"{f.count(len(running))} running, {f.count(len(history))} in all.")
        table(tables.experiments_table(history), "pf_experiments")
        splits = [r.id for r in history if r.kind == "split"]
        if splits:
            compare_split(splits)
    if wb.can(Action.MANAGE_EXPERIMENTS):
        manage_tests(running)


# -- (d) fairness, (e) decision quality ----------------------------------------------------------

def fairness_section() -> None:
    st.subheader("Fairness: approval rates by group")
    columns = [*cfg.protected_columns, *cfg.segments]
    if not columns:
        st.info("No protected or segment column is configured: declare protected characteristics with "
                "role: protected, and segments under dataset.segments, in the config.")
        return
    segment = st.selectbox("Group by", columns, format_func=label, key="pf_segment",
                           help="Protected characteristics first (never a model input), then segments.")
    report = wb.performance.fairness(segment)
    st.caption("The adverse impact ratio is a group's approval rate divided by the most-approved group's; "
               f"under the four-fifths threshold ({f.pct(report.threshold, 0)}) the group is flagged for a "
               "closer look.")
    if not report.groups:
        st.info("No decided application yet: approval rates appear once batches are stored and decided.")
        return
    table(tables.fairness_table(report, segment), "pf_fairness")
    for g in report.flagged:
        st.warning(f"{f.md(label(segment))} {f.md(g.group)}: approved at {f.number(g.impact_ratio, 2)} of the "
                   f"reference group's rate ({f.pct(g.approval_rate)} of {f.count(g.decided)}).")
    trend = wb.performance.fairness_over_time(segment, by="week")
    if len(trend) > 1:
        st.markdown("**Week by week** (impact ratio of each group; a flag in one week alone may be chance)")
        table(tables.fairness_trend_table(trend, segment), "pf_fairness_trend")
    for note in report.notes:
        if note != FAIRNESS_NOTE:
            st.caption(f.md(note))
    st.caption(FAIRNESS_NOTE)


def quality_section() -> None:
    st.subheader("Officers' decisions")
    rows = wb.performance.decision_quality()
    if not rows or rows[-1].decisions == 0:
        st.info("No manual decision yet: officers' decisions on reviewed cases appear here, with how their "
                "overrides of the model turned out once outcomes are loaded.")
        return
    table(tables.quality_table(rows), "pf_quality")
    st.caption("An override approves what the model would decline at its cut-off, or declines what it would "
               "approve; the last row is everyone.")


st.title("Performance")
st.caption(f.md(APPROVED_ONLY))
if wb.can(Action.LOAD_OUTCOMES):
    outcome_section()
    st.divider()
vintage_section()
st.divider()
experiment_section()
st.divider()
fairness_section()
st.divider()
quality_section()
