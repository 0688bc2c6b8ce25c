"""The writer's column builders give exactly what the slower, obvious code gives."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd

from finflow_core.store.chunk_rows import records_json


def lines(frame: pd.DataFrame) -> list[str]:
    return frame.to_json(orient="records", lines=True, force_ascii=False).splitlines()


def test_records_json_is_pandas_json_lines_even_for_cells_that_look_like_record_boundaries() -> None:
    hostile = ['x"},{"y', '},{"', "},{", 'é\n\t"', "{\"a\":1}", "\\", '\\"},{"', "", " ", "\u202e"]
    frame = pd.DataFrame({"id": hostile, '"},{"key': ["1"] * len(hostile),
                          "n": [None, *["v"] * (len(hostile) - 1)]})
    assert records_json(frame) == lines(frame)


def test_records_json_matches_on_random_text_numbers_and_missing_cells() -> None:
    rng = random.Random(7)
    alphabet = 'ab,{}[]":\\ \n\té€😀'
    n = 500
    frame = pd.DataFrame({
        "text": ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(n)],
        "number": np.where(np.arange(n) % 7 == 0, np.nan, np.arange(n) / 3),
        "code": pd.Series(["Y", "N", None, "}{"] * (n // 4), dtype=object),
    })
    assert records_json(frame) == lines(frame)
    assert records_json(frame.iloc[:0]) == []
    assert records_json(frame.iloc[:1]) == lines(frame.iloc[:1])
