"""A lender without pricing data, and a file with undeclared codes, through the store:
profits are NULL ("not priced"), mapped codes are counted in the summary and the exports."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text

from finflow_core.cli import main
from finflow_core.lending.config import Config, load_config
from finflow_core.services.access import SYSTEM, Principal
from finflow_core.services.context import Context
from finflow_core.services.workbench import Workbench
from finflow_core.store import Store, open_store
from finflow_core.store.audit_chain import verify_audit
from finflow_core.store.decision_check import verify_decisions
from finflow_core.store.rollup import check_rollups

FIXTURES = Path(__file__).parents[1] / "fixtures"
CSV = FIXTURES / "real_shaped.csv"
MANAGER = Principal(None, "mia.manager", frozenset({"manager"}))
OFFICER = Principal(None, "oscar.officer", frozenset({"officer"}))


def unpriced_yaml(home: Path) -> str:
    """The real-shaped config without its pricing section (no rate anywhere: the cut-off
    comes from the bad-rate target alone), its paths under ``home``."""
    source = (FIXTURES / "real_shaped.yaml").read_text()
    body = re.sub(r"\npricing:\n(  .*\n)+", "\n", source)
    body = body[: body.index("\npaths:")]
    assert "interest_rate" not in body
    return body + (f"\npaths:\n  models_dir: {home / 'models'}\n  data_dir: {home / 'data'}\n"
                   f"  database_url: sqlite:///{home / 'data' / 'finflow.db'}\n")


@pytest.fixture(scope="module")
def lender(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Config, Store, Path]]:
    home = tmp_path_factory.mktemp("unpriced")
    mp = pytest.MonkeyPatch()
    mp.setenv("FINFLOW_SECRET_KEY", "unpriced-test-key-0123456789")
    mp.delenv("FINFLOW_DATABASE_URL", raising=False)
    config_path = home / "config.yaml"
    config_path.write_text(unpriced_yaml(home))
    config = load_config(config_path)
    assert config.pricing.mode == "none"
    store = open_store(config.paths.database_url)
    try:
        Workbench(Context(config, store), SYSTEM).models.train(CSV)
        yield config, store, config_path
    finally:
        store.close()
        mp.undo()


def week_file(tmp: Path) -> Path:
    raw = pd.read_csv(CSV, dtype=str, keep_default_na=False)
    week = raw.tail(150).drop(columns=["defaulted"]).copy()
    week.loc[week.index[:4], "RevLineCr"] = ["R", "Q", "R", "R"]  # codes the file never declared
    path = tmp / "week-01.csv"
    buf = io.StringIO()
    week.to_csv(buf, index=False)
    path.write_text(buf.getvalue())
    return path


def test_an_unpriced_batch_stores_null_profits_and_says_not_priced(
    lender: tuple[Config, Store, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, store, _ = lender
    wb = Workbench(Context(config, store), SYSTEM)
    summary = wb.batches.run(week_file(tmp_path), out_dir=tmp_path / "out")
    assert summary.priced is False and summary.expected_profit is None and summary.roi is None
    assert summary.rows_valid == 150
    with store.connect() as conn:
        q = conn.execute(text(
            "SELECT count(*), count(a.expected_profit), count(s.ev_approve), count(s.ev_review) "
            "FROM applications a JOIN scores s ON s.application_id = a.id WHERE a.batch_id = :b"),
            {"b": summary.batch_id}).one()
        assert tuple(q) == (150, 0, 0, 0)  # NULL, never NaN or a made-up 0
        assert conn.execute(text("SELECT expected_profit FROM batches")).scalar() is None
        assert check_rollups(conn) == []
    # value mappings: counted in the summary, its JSON and their own export
    mapped = {(m["column"], m["value"]): m["count"] for m in summary.value_mappings}
    assert mapped[("RevLineCr", "R")] == 3 and mapped[("RevLineCr", "Q")] == 1
    assert all(m["mapped_to"] == "missing" for m in summary.value_mappings)
    assert any("cell(s) were kept and read as other than written" in w
               for w in summary.warnings)
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["expected_profit"] is None and saved["priced"] is False
    assert saved["value_mappings"] == summary.value_mappings
    exported = pd.read_csv(tmp_path / "out" / "value_mappings.csv", dtype={"value": str})
    assert exported.set_index(["column", "value"])["count"].to_dict() == mapped
    decisions = pd.read_csv(tmp_path / "out" / "decisions.csv")
    assert decisions["expected_profit"].isna().all() and len(decisions) == 150
    assert wb.batches.summary(summary.batch_id).value_mappings == summary.value_mappings
    # an officer decides a case of it; the portfolio still adds up
    officer = Workbench(Context(config, store), OFFICER).review
    case = officer.next_case()
    officer.decide(case, "approve")
    with store.connect() as conn:
        assert check_rollups(conn) == []
    kpis = Workbench(Context(config, store), MANAGER).portfolio.summary().kpis()
    assert kpis["applications"] == 150
    vd = verify_decisions(store)
    assert verify_audit(store).ok and vd.ok, vd.problems


def test_the_cli_prints_not_priced_instead_of_nan(
    lender: tuple[Config, Store, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, store, config_path = lender
    from finflow_core.security import passwords

    monkeypatch.setattr(passwords, "SCRYPT_N", 2**10)
    gate_wb = Workbench(Context(config, store), SYSTEM)
    from finflow_core.services.sessions import Gate

    gate = Gate(Context(config, store))
    if not gate.has_users():
        admin = gate.create_first_admin("ada.admin", "a long enough test password")
        admin.users.add("ann.analyst", "a long enough test password", ["analyst"])
    assert gate_wb.actor is SYSTEM
    monkeypatch.setenv("FINFLOW_USER", "ann.analyst")
    monkeypatch.setenv("FINFLOW_PASSWORD", "a long enough test password")
    path = week_file(tmp_path)
    path.write_text(path.read_text().replace("\n", "\n", 1) + "")
    other = tmp_path / "week-02.csv"
    raw = pd.read_csv(CSV, dtype=str, keep_default_na=False).head(120).drop(columns=["defaulted"])
    raw.to_csv(other, index=False)
    code = main(["--config", str(config_path), "weekly-run", "--data", str(other)])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "not priced" in out.out and "nan" not in out.out.lower()
    code = main(["--config", str(config_path), "weekly-run", "--data", str(other), "--json"])
    out = capsys.readouterr()
    payload = json.loads(out.out)
    assert payload["expected_profit"] is None and payload["priced"] is False
    assert "stored already as batch" in out.err and "finflow batches void" in out.err
