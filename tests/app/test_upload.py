"""Batches: the quality gate, scoring with progress, the summary, re-uploads and bad files."""

from __future__ import annotations

import hashlib

import pandas as pd
from app_support import no_exception, page_as, plain, table_with, texts

from finflow_core.lending.synthetic import generate_applications


def batch_bytes(rows: int, seed: int, broken: int = 0) -> bytes:
    df = generate_applications(rows, seed).drop(columns=["default"])
    if broken:
        df["credit_score"] = df["credit_score"].astype(object)
        df.loc[: broken - 1, "credit_score"] = "n/a"  # the first rows fail the quality gate
    return df.to_csv(index=False).encode("utf-8")


def metric(at, label: str) -> str:  # type: ignore[no-untyped-def]
    return next(m.value for m in at.metric if m.label == label)


def test_a_good_batch_shows_the_quality_gate_then_scores_and_stores(inst) -> None:
    before = len(inst.wb("manager").batches.list())
    at = page_as(inst.users["analyst"], "pages/upload.py")
    at.file_uploader(key="up_file").set_value(("week_9.csv", batch_bytes(400, 901, broken=7), "text/csv")).run()
    no_exception(at)
    # the quality gate comes first: counts, the quarantined rows and their download
    assert metric(at, "Rows in file") == "400"
    assert metric(at, "Valid") == "393"
    assert metric(at, "Quarantined") == "7"
    quarantined = table_with(at, "reasons")
    assert len(quarantined) == 7 and quarantined["reasons"].str.contains("credit_score").all()
    assert {b.label for b in at.get("download_button")} >= {"Download quarantined rows (CSV)",
                                                             "Download issues (CSV)"}
    assert len(inst.wb("manager").batches.list()) == before  # nothing stored yet

    at.button(key="up_score").click().run()
    no_exception(at)
    stored = inst.wb("manager").batches.list()
    assert len(stored) == before + 1
    summary = inst.wb("manager").batches.summary(stored[0].id)
    assert summary is not None and summary.rows_valid == 393
    assert f"Stored as batch {summary.batch_id}." in [s.value for s in at.success]
    assert at.get("progress")  # the progress bar was drawn
    assert metric(at, "Applications") == "400"
    assert metric(at, "Auto-approve") == f"{summary.bands['low']:,}"
    assert metric(at, "Manual review") == f"{summary.bands['medium']:,}"
    assert metric(at, "Automation rate") == f"{summary.automation_rate:.1%}"
    assert "Drift: **" in texts(at)
    assert any(b.label == "Download decisions (CSV)" for b in at.get("download_button"))

    # a rerun (any click) says it is this session's batch, not "uploaded before"
    at.run()
    assert f"Stored as batch {summary.batch_id}." in [s.value for s in at.success]


def test_a_file_that_is_not_a_batch_is_rejected_and_nothing_is_stored(inst) -> None:
    before = len(inst.wb("manager").batches.list())
    at = page_as(inst.users["analyst"], "pages/upload.py")
    at.file_uploader(key="up_file").set_value(("notes.csv", b"name;amount\nx;1\n", "text/csv")).run()
    no_exception(at)
    errors = [plain(e.value) for e in at.error]
    assert len(errors) == 1
    assert errors[0].startswith("File rejected, nothing was stored: notes.csv: missing required column(s)")
    assert all(b.key != "up_score" for b in at.button)
    assert len(inst.wb("manager").batches.list()) == before


def test_the_quality_gate_names_the_failed_rules_in_words(inst) -> None:
    df = generate_applications(30, 808).drop(columns=["default"])
    df["credit_score"] = df["credit_score"].astype(object)
    df.loc[:1, "credit_score"] = "n/a"
    df.loc[2, "application_id"] = "L" * 400
    at = page_as(inst.users["analyst"], "pages/upload.py")
    at.file_uploader(key="up_file").set_value(("rules.csv", df.to_csv(index=False).encode(), "text/csv")).run()
    no_exception(at)
    said = plain(at.warning[0].value)
    assert said == ("3 row(s) fail the quality gate and will not be scored: must be a number ×2, "
                    "text is too long ×1")


def test_the_quality_gate_says_before_scoring_which_codes_will_read_as_missing(inst) -> None:
    df = generate_applications(30, 3131).drop(columns=["default"])
    df["industry"] = df["industry"].astype(object)
    df.loc[:2, "industry"] = "mining"
    at = page_as(inst.users["analyst"], "pages/upload.py")
    at.file_uploader(key="up_file").set_value(("codes.csv", df.to_csv(index=False).encode(), "text/csv")).run()
    no_exception(at)
    assert any(b.key == "up_score" for b in at.button)  # not stored yet: the analyst can still decide
    notes = [plain(c.value) for c in at.caption if c.value.startswith("Note:")]
    assert notes == ["Note: 3 cell(s) were kept and read as other than written (undeclared codes by their "
                     "column's policy, missing-value texts as missing): industry: 'mining' ×3 mapped to missing"]


def test_before_a_file_the_page_says_the_size_limit_and_what_a_refused_file_looks_like(inst) -> None:
    at = page_as(inst.users["analyst"], "pages/upload.py")
    no_exception(at)
    limit = inst.config.limits.max_file_mb
    assert (f"Up to {limit:g} MB per file: a larger file is marked red in the box above and never reaches "
            "FinFlow; split it into smaller batches.") in [plain(c.value) for c in at.caption]


def test_a_small_batch_says_drift_was_not_judged_in_words(inst) -> None:
    at = page_as(inst.users["analyst"], "pages/upload.py")
    at.file_uploader(key="up_file").set_value(("week_small.csv", batch_bytes(40, 4040), "text/csv")).run()
    at.button(key="up_score").click().run()
    no_exception(at)
    banner = next(i.value for i in at.info if i.value.startswith("Drift:"))
    assert banner.startswith("Drift: **TOO FEW ROWS**: score PSI ")  # not INSUFFICIENT_DATA
    assert "insufficient" not in texts(at).lower()
    batches = table_with(at, "drift")
    assert batches["drift"].iloc[0] == "too few rows"


def test_re_uploading_a_stored_file_says_so_and_shows_the_stored_batch(inst) -> None:
    sample = inst.config.paths.data_dir / "samples" / "week_1.csv"
    stored_id = "B-" + hashlib.sha256(sample.read_bytes()).hexdigest()[:16]
    assert stored_id in [b.id for b in inst.wb("manager").batches.list()]
    before = len(inst.wb("manager").batches.list())
    at = page_as(inst.users["analyst"], "pages/upload.py")
    at.file_uploader(key="up_file").set_value(("week_1_again.csv", sample.read_bytes(), "text/csv")).run()
    no_exception(at)
    assert any(f"uploaded before (batch {stored_id})" in i.value for i in at.info)
    assert metric(at, "Applications") == "2,000"
    assert all(b.key != "up_score" for b in at.button)
    assert len(inst.wb("manager").batches.list()) == before


def test_managers_see_the_batches_but_cannot_upload(inst) -> None:
    at = page_as(inst.users["manager"], "pages/upload.py")
    no_exception(at)
    assert not at.file_uploader
    files = table_with(at, "file")["file"].tolist()
    assert {"week_1.csv", "week_2.csv", "week_3.csv"} <= set(files)
    assert {b.label for b in at.get("download_button")} == {"Decisions (CSV)", "Quarantined rows (CSV)",
                                                            "Quality issues (CSV)"}


def test_the_batches_table_rounds_rates_like_the_tiles_instead_of_truncating(inst) -> None:
    """Streamlit truncates a number column to its step: a stored automation rate of 0.6945
    read 69.4% in the table beside a 69.5% tile. The page rounds before it draws."""
    from finflow_app.fmt import percent_column, rounded

    at = page_as(inst.users["analyst"], "pages/upload.py")
    at.file_uploader(key="up_file").set_value(("week_odd.csv", batch_bytes(293, 977), "text/csv")).run()
    at.button(key="up_score").click().run()  # 293 rows: a rate such as 203/293 = 0.69283...
    no_exception(at)
    shown = next(d.value for d in at.dataframe if "automation" in d.value.columns)
    stored = {b.id: b.automation_rate for b in inst.wb("analyst").batches.list(limit=30)}
    assert any(round(r, 3) != r for r in stored.values())  # some rate has more decimals than shown
    for bid, rate in zip(shown["batch"], shown["automation"], strict=True):
        assert rate == round(stored[bid], 3), bid
    frame = rounded(pd.DataFrame({"a": [0.69281, 0.6975001], "b": ["x", "y"]}),
                    {"a": percent_column("a"), "b": None})
    assert list(frame["a"]) == [0.693, 0.698] and list(frame["b"]) == ["x", "y"]
    # a tie rounds away from zero, as the tiles do (pandas would round 0.0625 to 0.062)
    assert rounded(pd.DataFrame({"a": [0.0625, None]}), {"a": percent_column("a")})["a"].iloc[0] == 0.063
