"""Run inside bench/.venv-evidently (pandas < 3, evidently 0.7): PSI of the same data.

    bench/.venv-evidently/bin/python bench/evidently_psi.py DATA_DIR

Prints one JSON object: evidently's own PSI (its Report with the PSI method: its own
binning) and its PSI function applied to FinFlow's bins, each with its time.
"""

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

warnings.simplefilter("ignore")


def main() -> None:
    folder = Path(sys.argv[1])
    kinds = json.loads((folder / "columns.json").read_text())
    cur = pd.read_parquet(folder / "current.parquet")
    ref = pd.read_parquet(folder / "reference.parquet")
    cur_bins = pd.read_parquet(folder / "current_bins.parquet")
    ref_bins = pd.read_parquet(folder / "reference_bins.parquet")
    import evidently
    from evidently.legacy.calculations.stattests.psi import _psi
    from evidently.legacy.core import ColumnType

    out = {"evidently": evidently.__version__, "pandas": pd.__version__}

    # (a) evidently's own PSI, the way a user runs it: a Report over every column
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    numeric = [k for k, v in kinds.items() if v == "numeric"]
    categorical = [k for k, v in kinds.items() if v == "categorical"]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    t = time.perf_counter()
    cur_ds = Dataset.from_pandas(cur, data_definition=definition)
    ref_ds = Dataset.from_pandas(ref, data_definition=definition)
    report = Report([ValueDrift(column=c, method="psi") for c in kinds])
    snapshot = report.run(cur_ds, ref_ds)
    out["report_seconds"] = time.perf_counter() - t
    own = {}
    for m in snapshot.dict()["metrics"]:
        name = m.get("config", {}).get("column") or m.get("metric_name", "")
        value = m.get("value")
        own[str(name)] = float(value) if isinstance(value, (int, float)) else value
    out["psi_report"] = own
    # the same numbers straight from the PSI function with evidently's own binning
    t = time.perf_counter()
    direct = {}
    for k, kind in kinds.items():
        ct = ColumnType.Numerical if kind == "numeric" else ColumnType.Categorical
        r, c = ref[k].dropna(), cur[k].dropna()
        direct[k] = float(_psi(r, c, ct, 0.1)[0])
    out["psi_own_binning"] = direct
    out["own_binning_seconds"] = time.perf_counter() - t

    # (b) evidently's PSI function on FinFlow's bins (each row's bin as a category)
    t = time.perf_counter()
    same = {k: float(_psi(ref_bins[k], cur_bins[k], ColumnType.Categorical, 0.1)[0]) for k in kinds}
    out["finflow_bins_seconds"] = time.perf_counter() - t
    out["psi_on_finflow_bins"] = same
    print(json.dumps(out, default=lambda o: o.item() if isinstance(o, np.generic) else str(o)))


if __name__ == "__main__":
    main()
