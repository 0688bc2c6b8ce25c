"""A real-shaped file configured by YAML alone (docs/REAL_DATA.md): its own id and names,
no rate column, a Y/N flag holding 0/1/T/blanks, undocumented sector codes, the owner's sex."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lender_files import config_in_fresh_home

from finflow_core.lending.config import Config, load_config, load_yaml, parse_config
from finflow_core.lending.intake.validation import ValidationReport, validate_batch
from finflow_core.lending.model.bundle import ModelBundle, build_bundle
from finflow_core.lending.model.training import train
from finflow_core.lending.model.training_data import check_training_data
from finflow_core.lending.scoring import ScoringEngine

FIXTURES = Path(__file__).parents[1] / "fixtures"
CSV = FIXTURES / "real_shaped.csv"
CONFIG = FIXTURES / "real_shaped.yaml"


@pytest.fixture(scope="module")
def lender(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    yield from config_in_fresh_home(tmp_path_factory, CONFIG, "real_home")


@pytest.fixture(scope="module")
def raw_file() -> pd.DataFrame:
    """The file as text, as a person would look at it before configuring anything."""
    return pd.read_csv(CSV, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def history(lender: Config) -> ValidationReport:
    return validate_batch(CSV, lender, require_target=True)


def test_the_config_says_what_the_file_is(lender: Config) -> None:
    assert (lender.id_column, lender.target_column, lender.amount_column) == (
        "LoanNr_ChkDgt", "defaulted", "GrAppv")
    assert lender.rate_column is None and lender.term_column == "Term"
    assert lender.pricing.mode == "config" and lender.pricing.assumed == {"interest_rate"}
    assert lender.column("RevLineCr").categories == ("Y", "N")
    assert lender.column("NAICS2").categories[:3] == ("11", "23", "31")
    assert lender.protected_columns == ("OwnerSex",)
    assert "OwnerSex" not in lender.feature_names
    assert lender.feature_names == ("Term", "NoEmp", "GrAppv", "NewExist", "UrbanRural",
                                    "RevLineCr", "NAICS2", "amount_per_employee")
    assert (lender.strategy.cutoff.by, lender.strategy.cutoff.value) == ("max_bad_rate", 0.12)
    assert lender.warnings == ()
    assert lender.lender.address == ("200 Main Street", "Springfield, IL 62701")
    assert lender.display.timezone == "America/New_York" and lender.review.sla_hours == 48


def test_undeclared_codes_are_kept_and_counted(history: ValidationReport, raw_file: pd.DataFrame,
                                               lender: Config) -> None:
    assert history.rows_in == len(raw_file) == 600
    assert history.rows_quarantined == 0  # nothing lost to codes the documentation never listed
    expected = []
    for col in ("NewExist", "RevLineCr", "NAICS2"):
        declared = set(lender.column(col).categories)
        odd = raw_file[col][~raw_file[col].isin(declared) & (raw_file[col].str.strip() != "")]
        expected += [(col, v, "missing", n) for v, n in odd.value_counts().items()]
    got = [tuple(r) for r in history.mapped[["column", "value", "mapped_to", "count"]].values]
    assert sorted(got) == sorted(expected)
    assert {v for c, v, _, _ in got if c == "RevLineCr"} == {"0", "1", "T"}
    assert "NAICS2: '0' ×33 mapped to missing" in history.mapping_lines()
    valid = history.valid
    odd_rows = raw_file["RevLineCr"].isin(["0", "1", "T"]).to_numpy()
    assert valid.loc[odd_rows, "RevLineCr"].isna().all()
    assert valid.loc[~odd_rows & (raw_file["RevLineCr"] != "").to_numpy(), "RevLineCr"].notna().all()
    # the protected column is validated and kept with each application
    assert valid["OwnerSex"].astype(object).fillna("").tolist() == raw_file["OwnerSex"].tolist()


@pytest.fixture(scope="module")
def bundle(history: ValidationReport, lender: Config) -> ModelBundle:
    check = check_training_data(history, lender)
    check.enforce()
    result = train(history.valid, lender)
    return build_bundle(result, history.valid, lender, training_sha256=history.batch.sha256,
                        version="20260105T000000Z-realdata", training_data=check)


def test_training_cuts_off_by_the_bad_rate_target(bundle: ModelBundle, history: ValidationReport,
                                                  lender: Config) -> None:
    s = bundle.strategy
    y = history.valid["defaulted"].to_numpy(dtype=int)
    p = bundle.model.oof_proba_
    assert s.cutoff_method == "max_bad_rate" and s.cutoff_target == 0.12
    assert y[p < s.cutoff].mean() <= 0.12 < y.mean()
    assert s.low_edge <= s.cutoff <= s.high_edge
    assert s.automation_rate >= 0.70 - 1e-4
    assert not s.never_declines
    card = bundle.card
    assert card["pricing"]["mode"] == "config" and card["pricing"]["assumed"] == ["interest_rate"]
    assert card["pricing"]["interest_rate"] == 0.11 and card["pricing"]["term_column"] == "Term"
    assert card["strategy"]["cutoff_method"] == "max_bad_rate"
    assert card["training_data"]["rows_quarantined"] == 0
    assert {m["column"] for m in card["training_data"]["mapped_values"]} == {
        "NewExist", "RevLineCr", "NAICS2"}
    assert "OwnerSex" not in card["features"] and "OwnerSex" not in bundle.required_columns


def test_the_first_weekly_batch(bundle: ModelBundle, lender: Config, raw_file: pd.DataFrame) -> None:
    week = raw_file.tail(120).drop(columns=["defaulted", "OwnerSex"]).copy()  # no sex column
    week.loc[week.index[:4], "RevLineCr"] = ["R", "Q", "R", "R"]  # codes training never saw
    buf = io.StringIO()
    week.to_csv(buf, index=False)
    report = validate_batch(buf.getvalue().encode(), lender, name="week-01.csv")
    assert report.rows_valid == 120
    assert "RevLineCr: 'R' ×3 mapped to missing" in report.mapping_lines()
    assert any("optional column(s) not in the file: OwnerSex" in w for w in report.warnings)
    decisions = ScoringEngine(bundle, lender).score(report.valid, report.row_numbers)
    assert len(decisions) == 120 and set(decisions["decision"]) <= {"approve", "review", "decline"}
    assert np.isfinite(decisions["expected_profit"].to_numpy(dtype=float)).all()  # assumed rate
    cited = {r["feature"] for rs in decisions["reasons"] for r in rs}
    assert cited and cited <= set(lender.feature_names) and "OwnerSex" not in cited


def test_the_documented_config_is_the_fixture(lender: Config) -> None:
    text = (Path(__file__).parents[3] / "docs" / "REAL_DATA.md").read_text()
    block = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)[0]
    documented = parse_config(load_yaml(block))
    for part in ("columns", "ratios", "segments", "pricing", "strategy", "economics", "lender",
                 "display", "review"):
        assert getattr(documented, part) == getattr(lender, part), part


def test_the_register_as_published_reads_like_the_cleaned_file(
    lender: Config, history: ValidationReport, tmp_path: Path
) -> None:
    """The public register writes money as ``$261,700.00 ``, dates as ``02-Oct-22`` and the
    outcome as ``P I F`` / ``CHGOFF``: declared in the config, the file reads as the cleaned
    one (same rows kept, same amounts and outcomes), no code needed."""
    raw = pd.read_csv(CSV, dtype=str, keep_default_na=False)
    published = raw.copy()
    published["GrAppv"] = [f"${float(v):,.2f} " for v in raw["GrAppv"]]
    published["defaulted"] = raw["defaulted"].map({"1": "CHGOFF", "0": "P I F"})
    published = published.rename(columns={"defaulted": "MIS_Status"})
    path = tmp_path / "published.csv"
    published.to_csv(path, index=False)
    yaml_text = CONFIG.read_text()
    yaml_text = yaml_text.replace("role: loan_amount\n", 'role: loan_amount\n      thousands: ","\n'
                                  '      strip: ["$"]\n', 1)
    yaml_text = yaml_text.replace("{name: ApprovalDate, type: string, role: info}",
                                  '{name: ApprovalDate, type: date, role: date, date_format: "%d-%b-%y"}')
    yaml_text = yaml_text.replace("{name: defaulted, type: integer, role: target, min: 0, max: 1}",
                                  '{name: MIS_Status, type: integer, role: target, min: 0, max: 1, '
                                  'codes: {CHGOFF: 1, "P I F": 0}}')
    assert yaml_text.count("codes: {CHGOFF") == 1 and yaml_text.count("strip:") == 1
    conf = tmp_path / "published.yaml"
    conf.write_text(yaml_text)
    as_published = load_config(conf)
    report = validate_batch(path, as_published, require_target=True)
    assert report.rows_valid == history.rows_valid
    assert report.row_numbers.tolist() == history.row_numbers.tolist()
    assert report.valid["GrAppv"].tolist() == history.valid["GrAppv"].tolist()
    assert report.valid["MIS_Status"].astype(int).tolist() == history.valid["defaulted"].astype(int).tolist()
    assert report.valid["ApprovalDate"].notna().all()
    assert str(report.valid["ApprovalDate"].min().date()) >= "2000-01-01"
