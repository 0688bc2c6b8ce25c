"""Where a challenger's training data comes from: the champion's own data plus what was learned.

The champion's training file is kept (compressed, its hash in the signed card) in its model
folder; every stored application with an outcome since is added with its outcome as the
target. Only funded loans have outcomes, so the challenger, like the champion, never learns
from declined applicants (see docs/LIFECYCLE.md on reject inference).
"""

from __future__ import annotations

import gzip
import hashlib
import io
from typing import Any

import pandas as pd

from finflow_core.errors import ModelError, ModelIntegrityError
from finflow_core.lending.terms import Status
from finflow_core.services.context import Context
from finflow_core.store import outcomes as rows_of
from finflow_core.store import registry

#: The training file kept in a model's folder (gzip; its SHA-256 in the signed card).
TRAINING_COPY = "training_data.csv.gz"


def champion_training_frame(ctx: Context, version: str) -> tuple[pd.DataFrame, str]:
    """The version's training file as written (text cells) and its copy's SHA-256."""
    with ctx.store.connect() as conn:
        rec = registry.version(conn, version)
        card = registry.card(conn, version)
    if rec is None or card is None:
        raise ModelError(f"no model version {version!r}", version=version)
    path = registry.model_folder(rec.folder, ctx.config.paths.models_dir) / TRAINING_COPY
    want = card.get("training_copy_sha256")
    if want is None or not path.is_file():
        raise ModelError(f"model {version} kept no copy of its training data (trained before "
                         "FinFlow kept one): train the challenger from a file with `finflow train --data`")
    raw = path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != want:
        raise ModelIntegrityError(f"the training data kept with model {version} was changed: refusing "
                                  "to train on it", path=str(path))
    form = card.get("training_copy_form") or {}
    frame = pd.read_csv(io.BytesIO(gzip.decompress(raw)), dtype=str, keep_default_na=False,
                        encoding=form.get("encoding", "utf-8"), sep=form.get("delimiter", ","))
    return frame, want


def _labelled(ctx: Context) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Funded stored applications with an outcome (performance rows) and their cells as
    submitted with the outcome as the target, oldest vintage first."""
    config = ctx.config
    with ctx.store.connect(snapshot=True) as conn:
        perf = rows_of.performance_rows(conn)
        labelled = perf[(perf["status"] == Status.APPROVED) & perf["defaulted"].notna()]
        stored = rows_of.stored_data(conn, labelled["application_id"].astype(int).tolist())
    if stored.empty:
        return labelled, stored
    labelled = labelled.sort_values("application_id")
    stored[config.target_column] = labelled["defaulted"].astype(int).astype(str).to_numpy()
    return labelled, stored


def vintages_in_order(labelled: pd.DataFrame) -> list[str]:
    """Batch ids of the labelled rows, the earliest stored first."""
    first = labelled.groupby("batch_id")["uploaded_at"].min().sort_values(kind="stable")
    return [str(b) for b in first.index]


def challenger_training_data(ctx: Context, parent: str, *,
                             holdout_vintages: int = 1) -> tuple[bytes, dict[str, Any]]:
    """CSV bytes of the parent's training rows plus the labelled stored applications, and the
    lineage to record in the new model card.

    The most recent ``holdout_vintages`` labelled vintages are left out (when older ones
    remain) so that the challenger and the champion can be compared on applications neither
    learned from: the out-of-time holdout of ``finflow models compare``.
    """
    config = ctx.config
    base, copy_sha = champion_training_frame(ctx, parent)
    labelled, stored = _labelled(ctx)
    id_col = config.id_column
    if stored.empty:
        raise ModelError("no stored application has an outcome yet: load outcomes first "
                         "(`finflow outcomes load --data FILE.csv`)")
    order = vintages_in_order(labelled)
    held = order[-holdout_vintages:] if 0 < holdout_vintages < len(order) else []
    learned = stored[~stored["batch_id"].isin(held)]
    vintages = sorted(set(learned["batch_id"]))
    keep = [c for c in base.columns if c in learned.columns]
    newer = set(learned[id_col])
    base = base[~base[id_col].isin(newer)]  # an application learned again: its newer outcome wins
    combined = pd.concat([base, learned[keep]], ignore_index=True)[list(base.columns)].fillna("")
    lineage = {
        "parent_version": parent,
        "data": [
            {"source": f"training data of {parent}", "sha256": copy_sha, "rows": len(base)},
            {"source": "stored applications with outcomes", "rows": len(learned), "vintages": vintages,
             "observed_through": str(labelled["observed_on"].max())},
        ],
        "holdout": {"vintages": held, "rows": int(stored["batch_id"].isin(held).sum())} if held else None,
    }
    return combined.to_csv(index=False).encode(), lineage


def trained_vintages(card: dict[str, Any]) -> set[str]:
    """The stored vintages a model card says the model learned from."""
    return {str(v) for part in (card.get("lineage") or {}).get("data", []) for v in part.get("vintages", [])}


def holdout_frame(ctx: Context, candidate_card: dict[str, Any],
                  champion_card: dict[str, Any]) -> tuple[pd.DataFrame, list[str]] | None:
    """The out-of-time holdout both models can be judged on: the candidate's recorded holdout
    vintages, else the most recent labelled vintage neither model learned from; validated
    (typed, with the target) like a training file. None when there is none."""
    from finflow_core.lending.intake.reader import make_chunk
    from finflow_core.lending.intake.validation import BatchValidator

    labelled, stored = _labelled(ctx)
    if stored.empty:
        return None
    recorded = (candidate_card.get("lineage") or {}).get("holdout") or {}
    vintages = [v for v in recorded.get("vintages", []) if v in set(stored["batch_id"])]
    if not vintages:
        seen = trained_vintages(candidate_card) | trained_vintages(champion_card)
        fresh = [v for v in vintages_in_order(labelled) if v not in seen]
        vintages = fresh[-1:]
    if not vintages:
        return None
    part = stored[stored["batch_id"].isin(vintages)]
    columns = [c for c in part.columns if c != "batch_id"]
    n = len(part)
    chunk = make_chunk(tuple(columns), part[columns].fillna("").astype(str).values.tolist(),
                       list(range(1, n + 1)), list(range(2, n + 2)), [])
    valid = BatchValidator(ctx.config, require_target=True).validate(chunk).valid
    return (valid, vintages) if len(valid) else None
