"""Model & strategy: a what-if that shows no phantom change, training that shows up at once, and
promotion with a comparison, a reason and an audit entry. Its own installation (it promotes)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from app_support import Installation, installed, no_exception, page_as, plain, table_with, texts
from sklearn.metrics import roc_auc_score
from trail import audit_rows

from finflow_core.lending.synthetic import generate_applications


@pytest.fixture(scope="module")
def model_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    with installed(tmp_path_factory.mktemp("finflow_model_home")) as inst:
        yield inst


@pytest.fixture
def mi(model_home: Installation, monkeypatch: pytest.MonkeyPatch) -> Installation:
    monkeypatch.delenv("FINFLOW_DATABASE_URL", raising=False)
    for k in ("FINFLOW_HOME", "FINFLOW_CONFIG", "FINFLOW_SECRET_KEY"):
        monkeypatch.setenv(k, model_home.env[k])
    return model_home


def metric(at, label: str):  # type: ignore[no-untyped-def]
    return next(m for m in at.metric if m.label == label)


def save_button(at):  # type: ignore[no-untyped-def]
    return next(b for b in at.form_submit_button if b.label.startswith("Save edges"))


def test_untouched_sliders_show_no_change(mi) -> None:
    s = mi.wb("manager").models.active_strategy()
    assert (round(s.low_edge, 3), round(s.high_edge, 3)) != (s.low_edge, s.high_edge)  # off the grid
    at = page_as(mi.users["manager"], "pages/model.py")
    no_exception(at)
    for name in ("Automation rate", "Expected profit", "ROI"):
        assert not metric(at, name).delta, (name, metric(at, name).delta)
    now = mi.wb("manager").models.what_if(s.low_edge, s.high_edge)
    assert metric(at, "Automation rate").value == f"{now.automation_rate:.1%}"
    assert save_button(at).disabled  # nothing to save


def test_a_fall_in_profit_is_shown_as_a_fall(mi) -> None:
    s = mi.wb("manager").models.active_strategy()
    low = round(s.low_edge * 100, 1)
    at = page_as(mi.users["manager"], "pages/model.py")
    at.slider(key="md_edges").set_range(low, low + 1.0).run()  # declines nearly all it reviewed
    no_exception(at)
    now = mi.wb("manager").models.what_if(s.low_edge, s.high_edge)
    then = mi.wb("manager").models.what_if(low / 100, (low + 1.0) / 100)
    assert then.expected_profit < now.expected_profit
    assert metric(at, "Expected profit").delta.startswith("-USD ")  # red and down in st.metric
    rate = metric(at, "Automation rate").delta
    assert rate.startswith("+") and rate.endswith(" pts")  # more automated: up
    assert not save_button(at).disabled
    assert save_button(at).label.startswith(f"Save edges {low:.1f}% / {low + 1:.1f}%")


def test_a_model_trained_on_the_page_is_listed_at_once_and_compared(mi) -> None:
    before = {v.version for v in mi.wb("manager").models.versions()}
    history = generate_applications(900, seed=77).to_csv(index=False).encode("utf-8")
    at = page_as(mi.users["analyst"], "pages/model.py")
    at.file_uploader(key="md_train_file").set_value(("small_history.csv", history, "text/csv")).run()
    at.button(key="md_train").click().run(timeout=240)
    no_exception(at)
    new = {v.version for v in mi.wb("manager").models.versions()} - before
    assert len(new) == 1
    version = new.pop()
    assert version in table_with(at, "version")["version"].tolist()  # on the same screen
    assert any(plain(s.value).startswith(f"Registered model {version}") for s in at.success)
    shown = texts(at)
    assert "trained on far fewer applications: 900 against 3,000" in shown
    assert table_with(at, "calibration error")[""].tolist()[0] == f"candidate {version}"
    # percentages are rounded to what is shown (Streamlit would cut 0.2966 to 29.6%)
    cutoffs = {v.version: v.cutoff for v in mi.wb("manager").models.versions()}
    versions = table_with(at, "version")
    for v, shown_cutoff in zip(versions["version"], versions["cut-off"], strict=True):
        assert shown_cutoff == round(cutoffs[v], 3), v
    for name in ("calibration error", "automation"):
        assert all(x == round(x, 3) for x in table_with(at, "calibration error")[name].dropna()), name


def test_promotion_compares_warns_needs_a_reason_and_is_audited(mi) -> None:
    wb = mi.wb("manager")
    old = wb.models.champion().version
    new = next(v.version for v in wb.models.versions() if v.status == "candidate")
    comp = wb.models.compare(new)
    # both scored on the same rows: the candidate's training rows, out of fold for it
    assert comp.rows == 900 and comp.champion.version == old
    assert "900 applications model" in comp.source
    assert any(w.startswith("trained on far fewer applications") for w in comp.warnings)

    at = page_as(mi.users["manager"], "pages/model.py")
    at.selectbox(key="md_promote_version").set_value(new).run()
    no_exception(at)
    table = table_with(at, "calibration error")
    assert table[""].tolist() == [f"candidate {new}", f"champion {old}"]
    assert table["AUC"].tolist() == pytest.approx([comp.candidate.auc, comp.champion.auc])
    assert any("The candidate is worse than the champion here" in plain(w.value) for w in at.warning)

    promote = next(b for b in at.form_submit_button if b.label == f"Promote {new} to champion")
    promote.click().run()  # no reason
    assert "Give the reason for promoting this model" in texts(at)
    at.text_input(key="md_promote_note").input("recent data looks different")
    next(b for b in at.form_submit_button if b.label == f"Promote {new} to champion").click().run()
    assert "tick the box to promote it anyway" in texts(at)
    assert wb.models.champion().version == old

    at.text_input(key="md_promote_note").input("recent data looks different")
    at.checkbox(key="md_promote_anyway").check()
    next(b for b in at.form_submit_button if b.label == f"Promote {new} to champion").click().run()
    no_exception(at)
    assert wb.models.champion().version == new
    assert any(f"Model {new} is now the champion" in plain(s.value) for s in at.success)
    entry = audit_rows(mi.store, action="model_promoted")[-1]
    assert entry["subject_id"] == new and entry["details"]["note"] == "recent data looks different"
    assert entry["details"]["comparison"]["rows"] == 900
    assert entry["details"]["comparison"]["warnings"] == list(comp.warnings)

    # the page now follows the new champion: its edges on the slider, its name on the button
    s = wb.models.active_strategy()
    assert tuple(at.slider(key="md_edges").value) == (round(s.low_edge * 100, 1), round(s.high_edge * 100, 1))
    assert save_button(at).label.endswith(f"for {new}") and save_button(at).disabled
    assert at.text_input(key="md_note").value == ""
    for name in ("Automation rate", "Expected profit", "ROI"):
        assert not metric(at, name).delta


def test_comparison_figures_are_the_models_own_on_the_evidence(mi) -> None:
    wb = mi.wb("manager")
    versions = wb.models.versions()
    champion = wb.models.champion().version
    other = next(v.version for v in versions if v.version != champion)
    comp = wb.models.compare(other)
    bundle = wb.models.bundle(other)
    frame = bundle.evaluation
    y = frame[mi.config.target_column].to_numpy()
    assert comp.candidate.auc == pytest.approx(roc_auc_score(y, frame["_oof_probability"]))
    assert comp.observed_default_rate == pytest.approx(y.mean())
    with pytest.raises(Exception, match="reason"):
        wb.models.promote(other, "   ")
