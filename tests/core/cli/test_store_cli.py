"""The ``finflow`` command: in process through ``main(argv)``, and a few real subprocess runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from store_helpers import (
    LENDING_TABLES,
    PASSWORD,
    BatchFiles,
    Lending,
    raw_sql,
)
from trail import audit_rows

from finflow_core.cli import main

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures

DOCUMENTED_KEYS = ["batch_id", "model_version", "rows_in", "rows_valid", "rows_quarantined", "bands",
                   "automation_rate", "expected_profit", "drift"]
FINFLOW = Path(sys.executable).with_name("finflow")


@pytest.fixture
def signed_in(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """``signed_in("ann.analyst")``: the user (and password) every following command uses."""
    def sign_in(user: str | None, password: str = PASSWORD) -> None:
        if user is None:
            monkeypatch.delenv("FINFLOW_USER", raising=False)
            monkeypatch.delenv("FINFLOW_PASSWORD", raising=False)
        else:
            monkeypatch.setenv("FINFLOW_USER", user)
            monkeypatch.setenv("FINFLOW_PASSWORD", password)
    return sign_in


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# -- demo data and training -----------------------------------------------------------------------

def test_demo_data_writes_seeded_files_with_truth_and_drift(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ff_sqlite: Lending
) -> None:
    plain, truth, drifted = (tmp_path / n for n in ("plain.csv", "truth.csv", "recession.csv"))
    assert run(capsys, "demo-data", "--rows", 400, "--seed", 5, "--out", plain)[0] == 0
    code, out, _ = run(capsys, "demo-data", "--rows", 400, "--seed", 5, "--out", truth, "--with-truth")
    assert code == 0 and "400 applications" in out
    assert run(capsys, "demo-data", "--rows", 400, "--seed", 5, "--out", drifted,
               "--drift", "recession", "--no-label")[0] == 0
    a, b, c = (pd.read_csv(p) for p in (plain, truth, drifted))
    assert "true_pd" not in a and "true_pd" in b and b["true_pd"].between(0, 1).all()
    assert a.equals(b.drop(columns="true_pd"))  # same seed, same applications
    assert "default" not in c
    assert c["credit_score"].mean() < a["credit_score"].mean()
    assert ff_sqlite.counts()["batches"] == 0  # demo data touches no store


def test_train_needs_a_signed_in_analyst(
    ff_sqlite: Lending, capsys: pytest.CaptureFixture[str], signed_in
) -> None:  # noqa: ANN001
    ff_sqlite.users()
    history = ff_sqlite.model.history
    before = ff_sqlite.counts()
    models_dir = ff_sqlite.config.paths.models_dir
    folders_before = sorted(p for p in models_dir.glob("*") if p.is_dir())
    signed_in(None)
    code, _, err = run(capsys, "train", "--data", history)
    assert code == 7
    assert "--user" in err and "FINFLOW_PASSWORD" in err  # says how to sign in
    signed_in("oscar.officer")
    code, _, err = run(capsys, "train", "--data", history)
    assert code == 8 and "analyst" in err
    signed_in("ann.analyst", "not the password")
    code, _, err = run(capsys, "train", "--data", history)
    assert code == 7 and "wrong username or password" in err
    after = ff_sqlite.counts()
    assert after["model_versions"] == before["model_versions"]
    assert sorted(p for p in models_dir.glob("*") if p.is_dir()) == folders_before  # no model saved


@pytest.mark.heavy
def test_train_registers_a_candidate_for_an_analyst(
    ff_sqlite: Lending, capsys: pytest.CaptureFixture[str], signed_in, tmp_path: Path
) -> None:  # noqa: ANN001
    ff_sqlite.users()
    history = tmp_path / "history.csv"
    assert run(capsys, "demo-data", "--rows", 1500, "--seed", 8, "--out", history)[0] == 0
    signed_in("ann.analyst")
    code, out, err = run(capsys, "train", "--data", history, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["champion"] is False  # the session model is champion: this one waits
    signed_in("mia.manager")
    code, out, _ = run(capsys, "models", "list", "--json")
    assert {m["version"] for m in json.loads(out)} == {ff_sqlite.version, result["version"]}
    with pytest.raises(SystemExit) as no_reason:  # a promotion needs a reason
        run(capsys, "models", "promote", result["version"])
    assert no_reason.value.code == 2
    assert run(capsys, "models", "promote", result["version"], "--reason", "better on recent data")[0] == 0
    signed_in("ann.analyst")
    assert run(capsys, "models", "promote", ff_sqlite.version, "--reason", "x")[0] == 8


# -- the weekly run -------------------------------------------------------------------------------

def test_weekly_run_json_prints_the_documented_summary_and_the_same_file_is_stored_once(
    ff: Lending, batches_dir: BatchFiles, capsys: pytest.CaptureFixture[str], signed_in,
    tmp_path: Path,
) -> None:  # noqa: ANN001
    ff.users()
    signed_in("ann.analyst")
    code, out, err = run(capsys, "weekly-run", "--data", batches_dir.a, "--json", "--out",
                         tmp_path / "out", "--chunk-rows", 250)
    assert code == 0, err
    first = json.loads(out)
    assert list(first)[: len(DOCUMENTED_KEYS)] == DOCUMENTED_KEYS
    assert set(first["bands"]) == {"low", "medium", "high"}
    assert {"status", "score_psi", "features"} <= set(first["drift"])
    assert first["model_version"] == ff.version
    assert first["rows_in"] == BatchFiles.records(batches_dir.a)
    assert first["rows_in"] == first["rows_valid"] + first["rows_quarantined"]
    assert sum(first["bands"].values()) == first["rows_valid"]
    assert 0 <= first["automation_rate"] <= 1 and isinstance(first["expected_profit"], float)
    assert first["already_stored"] is False
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "decisions.csv", "quarantine.csv", "quarantine_issues.csv", "value_mappings.csv",
        "summary.json"}

    code, out, _ = run(capsys, "weekly-run", "--data", batches_dir.a, "--json")
    second = json.loads(out)
    assert code == 0 and second["batch_id"] == first["batch_id"] and second["already_stored"]
    assert ff.count("batches") == 1
    assert ff.stored_rows(first["batch_id"]) == first["rows_in"]
    code, out, _ = run(capsys, "weekly-run", "--data", batches_dir.a)
    assert code == 0 and "already stored: nothing added" in out


def test_fail_on_drift_exits_11_on_a_recession_batch_and_still_stores_it(
    ff_sqlite: Lending, batches_dir: BatchFiles, capsys: pytest.CaptureFixture[str], signed_in,
) -> None:  # noqa: ANN001
    ff_sqlite.users()
    signed_in("ann.analyst")
    code, out, err = run(capsys, "weekly-run", "--data", batches_dir.a, "--json", "--fail-on-drift")
    assert code == 0, err  # the same population: no alert
    assert json.loads(out)["drift"]["status"] != "alert"
    code, out, err = run(capsys, "weekly-run", "--data", batches_dir.recession, "--json",
                         "--fail-on-drift")
    summary = json.loads(out)
    assert code == 11, (summary["drift"], err)
    assert summary["drift"]["status"] == "alert" and "drift alert" in err
    assert ff_sqlite.count("batches") == 2  # an alert is a warning, the batch is kept
    assert run(capsys, "weekly-run", "--data", batches_dir.recession)[0] == 0  # without the flag


def test_a_file_that_is_not_a_csv_exits_4_and_writes_nothing(
    ff_sqlite: Lending, batches_dir: BatchFiles, capsys: pytest.CaptureFixture[str], signed_in,
    tmp_path: Path,
) -> None:  # noqa: ANN001
    ff = ff_sqlite
    ff.users()
    signed_in("ann.analyst")
    before = ff.counts()
    out_dir = tmp_path / "never"
    code, _, err = run(capsys, "weekly-run", "--data", batches_dir.not_csv, "--out", out_dir, "--json")
    assert code == 4
    assert "finflow: error:" in err and json.loads(err.splitlines()[0])["error"] == "BatchRejected"
    assert not out_dir.exists()
    after = ff.counts()
    assert {t: after[t] for t in LENDING_TABLES} == {t: before[t] for t in LENDING_TABLES}
    assert after["batches"] == 0
    code, _, err = run(capsys, "weekly-run", "--data", tmp_path / "missing.csv", "--out", out_dir)
    assert code == 4 and "not found" in err and not out_dir.exists()


def test_weekly_run_exit_codes_for_roles_and_passwords(
    ff_sqlite: Lending, batches_dir: BatchFiles, capsys: pytest.CaptureFixture[str], signed_in,
) -> None:  # noqa: ANN001
    ff_sqlite.users()
    for user, password, expected in (("oscar.officer", PASSWORD, 8), ("mia.manager", PASSWORD, 8),
                                     ("ann.analyst", "wrong password!", 7), ("nobody", PASSWORD, 7)):
        signed_in(user, password)
        code, _, err = run(capsys, "weekly-run", "--data", batches_dir.a)
        assert code == expected, (user, err)
    assert ff_sqlite.count("batches") == 0


def test_no_users_means_nobody_gets_in_through_the_cli(
    ff_sqlite: Lending, batches_dir: BatchFiles, capsys: pytest.CaptureFixture[str], signed_in,
) -> None:  # noqa: ANN001
    for user in ("admin", "system", "ann.analyst"):
        signed_in(user, "whatever password")
        assert run(capsys, "weekly-run", "--data", batches_dir.a)[0] == 7
        assert run(capsys, "audit", "verify")[0] == 7
    assert ff_sqlite.count("batches") == 0 and ff_sqlite.count("users") == 0


# -- users and the audit trail ---------------------------------------------------------------------

def test_users_add_makes_the_first_admin_then_needs_an_admin(
    ff_sqlite: Lending, capsys: pytest.CaptureFixture[str], signed_in,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # noqa: ANN001
    monkeypatch.setenv("FINFLOW_NEW_PASSWORD", PASSWORD)
    signed_in(None)
    code, out, err = run(capsys, "users", "add", "ada.admin", "--role", "admin")
    assert code == 0, err
    assert "created user ada.admin" in out
    # the first user is made; now adding one needs a signed-in admin
    code, _, err = run(capsys, "users", "add", "ann.analyst", "--role", "analyst")
    assert code == 7 and "--user" in err
    signed_in("ada.admin")
    assert run(capsys, "users", "add", "ann.analyst", "--role", "analyst")[0] == 0
    assert run(capsys, "users", "add", "oscar.officer", "--role", "officer", "--role", "manager")[0] == 0
    signed_in("ann.analyst")
    code, _, err = run(capsys, "users", "add", "eve", "--role", "admin")
    assert code == 8 and "admin" in err
    signed_in("ada.admin", "bad password here")
    assert run(capsys, "users", "add", "eve", "--role", "admin")[0] == 7
    signed_in("ada.admin")
    code, out, _ = run(capsys, "users", "list", "--json")
    listed = {u["username"]: sorted(u["roles"]) for u in json.loads(out)}
    assert listed == {"ada.admin": ["admin"], "ann.analyst": ["analyst"],
                      "oscar.officer": ["manager", "officer"]}
    actions = [e for e in ff_sqlite_trail(ff_sqlite) if e[0] == "user_created"]
    assert actions == [("user_created", "system", "ada.admin"), ("user_created", "ada.admin", "ann.analyst"),
                       ("user_created", "ada.admin", "oscar.officer")]


def ff_sqlite_trail(ff: Lending) -> list[tuple[str, str, str]]:


    return [(e["action"], e["actor"], e["subject_id"]) for e in audit_rows(ff.store)]


def test_audit_verify_is_0_then_12_after_tampering(
    ff_sqlite: Lending, batches_dir: BatchFiles, capsys: pytest.CaptureFixture[str], signed_in,
) -> None:  # noqa: ANN001
    ff_sqlite.users()
    signed_in("ann.analyst")
    assert run(capsys, "weekly-run", "--data", batches_dir.a)[0] == 0
    code, _, _ = run(capsys, "audit", "verify")
    assert code == 8  # analysts do not read the trail
    signed_in("mia.manager")
    code, out, _ = run(capsys, "audit", "verify")
    assert code == 0 and "intact" in out
    raw_sql(ff_sqlite.store, "DROP TRIGGER audit_log_no_update",
            "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
    code, out, _ = run(capsys, "audit", "verify")
    assert code == 12 and "entry 3 " in out


# -- real processes ---------------------------------------------------------------------------------

def test_the_installed_command_runs_end_to_end_in_subprocesses(
    ff_sqlite: Lending, batches_dir: BatchFiles, tmp_path: Path
) -> None:
    env = dict(os.environ, FINFLOW_NEW_PASSWORD=PASSWORD)
    for name in ("FINFLOW_USER", "FINFLOW_PASSWORD"):
        env.pop(name, None)


    def finflow(*argv: object, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(FINFLOW), *map(str, argv)], env={**env, **extra},
                              capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)

    done = finflow("users", "add", "ada.admin", "--role", "admin")
    assert done.returncode == 0, done.stderr
    admin = {"FINFLOW_USER": "ada.admin", "FINFLOW_PASSWORD": PASSWORD}
    assert finflow("users", "add", "ann.analyst", "--role", "analyst", **admin).returncode == 0
    analyst = {"FINFLOW_USER": "ann.analyst", "FINFLOW_PASSWORD": PASSWORD}
    first = finflow("weekly-run", "--data", batches_dir.b, "--json", **analyst)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert list(summary)[: len(DOCUMENTED_KEYS)] == DOCUMENTED_KEYS
    no_user = finflow("train", "--data", ff_sqlite.model.history)
    assert no_user.returncode == 7 and "--user" in no_user.stderr
    verified = finflow("audit", "verify", "--json", **admin)
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"] is True
    assert ff_sqlite.count("batches") == 1
    assert ff_sqlite.stored_rows(summary["batch_id"]) == BatchFiles.records(batches_dir.b)
