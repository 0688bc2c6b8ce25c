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


def champion_training_frame(ctx: Context, version: str) -> tuple[pd.DataFrame, str]:
    """The version's training file as written (text cells) and its copy's SHA-256."""
    from finflow_core.services.models import TRAINING_COPY

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
    frame = pd.read_csv(io.BytesIO(gzip.decompress(raw)), dtype=str, keep_default_na=False)
    return frame, want


def challenger_training_data(ctx: Context, parent: str) -> tuple[bytes, dict[str, Any]]:
    """CSV bytes of the parent's training rows plus the labelled stored applications, and the
    lineage to record in the new model card."""
    config = ctx.config
    base, copy_sha = champion_training_frame(ctx, parent)
    with ctx.store.connect(snapshot=True) as conn:
        perf = rows_of.performance_rows(conn)
        labelled = perf[(perf["status"] == Status.APPROVED) & perf["defaulted"].notna()]
        stored = rows_of.stored_data(conn, labelled["application_id"].astype(int).tolist())
    target, id_col = config.target_column, config.id_column
    if stored.empty:
        raise ModelError("no stored application has an outcome yet: load outcomes first "
                         "(`finflow outcomes load --data FILE.csv`)")
    outcome_of = labelled.set_index("application_id")["defaulted"]
    stored[target] = outcome_of.reindex(labelled["application_id"].astype(int).to_numpy()).astype(int) \
        .astype(str).to_numpy()
    vintages = sorted(set(stored.pop("batch_id")))
    keep = [c for c in base.columns if c in stored.columns]
    newer = set(stored[id_col])
    base = base[~base[id_col].isin(newer)]  # an application learned again: its newer outcome wins
    combined = pd.concat([base, stored[keep]], ignore_index=True)[list(base.columns)].fillna("")
    lineage = {
        "parent_version": parent,
        "data": [
            {"source": f"training data of {parent}", "sha256": copy_sha, "rows": len(base)},
            {"source": "stored applications with outcomes", "rows": len(stored), "vintages": vintages,
             "observed_through": str(labelled["observed_on"].max())},
        ],
    }
    return combined.to_csv(index=False).encode(), lineage
