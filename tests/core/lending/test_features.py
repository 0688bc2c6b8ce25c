"""FeatureBuilder: scikit-learn conventions, ratios, category codes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from finflow_core.lending.config import ColumnSpec, Config
from finflow_core.lending.features import FeatureBuilder


@pytest.fixture()
def builder() -> FeatureBuilder:
    return FeatureBuilder(
        base_features=["income", "amount", "sector"],
        categories={"sector": ["retail", "farming", "services"]},
        ratios=[("amount_to_income", ["amount"], ["income"]),
                ("debt_to_income", ["amount", "debt"], ["income"])],
    )


@pytest.fixture()
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "income": [100.0, 0.0, 50.0, np.nan, -10.0],
            "amount": [25.0, 10.0, 50.0, 5.0, 5.0],
            "debt": [5.0, 1.0, np.nan, 0.0, 0.0],
            "sector": ["farming", "retail", "mining", None, "services"],
            "unused": ["a", "b", "c", "d", "e"],
        }
    )


def test_get_params_and_clone(builder: FeatureBuilder) -> None:
    params = builder.get_params()
    assert set(params) == {"base_features", "categories", "ratios"}
    assert params["categories"] == {"sector": ["retail", "farming", "services"]}
    twin = clone(builder)
    assert twin is not builder
    assert twin.get_params() == params
    twin.set_params(base_features=["income"])
    assert builder.base_features == ["income", "amount", "sector"]


def test_fit_sets_trailing_underscore_attributes(builder: FeatureBuilder,
                                                 frame: pd.DataFrame) -> None:
    with pytest.raises(NotFittedError):
        check_is_fitted(builder)
    assert builder.fit(frame) is builder
    check_is_fitted(builder)
    assert list(builder.feature_names_out_) == [
        "income", "amount", "sector", "amount_to_income", "debt_to_income"
    ]
    assert builder.n_features_out_ == 5
    assert list(builder.get_feature_names_out()) == list(builder.feature_names_out_)
    # a clone is unfitted again
    with pytest.raises(NotFittedError):
        check_is_fitted(clone(builder))


def test_transform_before_fit_raises_a_clear_error(builder: FeatureBuilder,
                                                   frame: pd.DataFrame) -> None:
    with pytest.raises(NotFittedError, match="not fitted: call fit first"):
        builder.transform(frame)
    with pytest.raises(ValueError):  # NotFittedError is a ValueError, as before
        builder.transform(frame)


def test_fit_names_missing_columns(builder: FeatureBuilder, frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"\['debt'\]"):
        builder.fit(frame.drop(columns="debt"))


def test_transform_values(builder: FeatureBuilder, frame: pd.DataFrame) -> None:
    out = builder.fit_transform(frame)
    assert out.shape == (5, 5) and out.dtype == np.float64
    np.testing.assert_array_equal(out[:, 0], frame["income"].to_numpy())
    np.testing.assert_array_equal(out[:, 1], frame["amount"].to_numpy())
    # categories -> position in the declared list; unknown or missing -> NaN
    np.testing.assert_array_equal(out[:, 2], [1.0, 0.0, np.nan, np.nan, 2.0])
    # ratio: zero, negative or missing denominator -> NaN
    np.testing.assert_array_equal(out[:, 3], [0.25, np.nan, 1.0, np.nan, np.nan])
    # sums in numerator; a missing part makes the ratio missing
    np.testing.assert_array_equal(out[:, 4], [0.30, np.nan, np.nan, np.nan, np.nan])


def test_typed_categorical_and_nullable_input(builder: FeatureBuilder) -> None:
    df = pd.DataFrame(
        {
            "income": pd.array([100, 200, pd.NA], dtype="Int64"),
            "amount": pd.array([10, 0, 5], dtype="Int64"),
            "debt": [0.0, 0.0, 0.0],
            "sector": pd.Categorical(["services", None, "retail"],
                                     categories=["retail", "farming", "services"]),
        }
    )
    out = builder.fit(df).transform(df)
    np.testing.assert_array_equal(out[:, 0], [100.0, 200.0, np.nan])
    np.testing.assert_array_equal(out[:, 2], [2.0, np.nan, 0.0])
    np.testing.assert_array_equal(out[:, 3], [0.1, 0.0, np.nan])


def test_frame_decodes_categories(builder: FeatureBuilder, frame: pd.DataFrame) -> None:
    df = builder.fit(frame).frame(frame)
    assert list(df.columns) == list(builder.feature_names_out_)
    assert df["sector"].tolist()[:3] == ["farming", "retail", "mining"]
    assert df["amount_to_income"].iloc[0] == 0.25
    assert df.index.equals(frame.index)


def test_from_config(config: Config, training_frame: pd.DataFrame) -> None:
    fb = FeatureBuilder.from_config(config)
    assert tuple(fb.base_features) == config.base_features
    assert set(fb.categories) == set(config.categorical_features)
    matrix = fb.fit(training_frame).transform(training_frame)
    assert matrix.shape == (len(training_frame), len(config.feature_names))
    j = list(config.feature_names).index("loan_to_income")
    expected = training_frame["loan_amount"] / training_frame["annual_revenue"]
    np.testing.assert_allclose(matrix[:, j], expected.to_numpy())
    k = list(config.feature_names).index("revenue_per_employee")
    missing = training_frame["employees"].isna().to_numpy()
    assert missing.any() and np.isnan(matrix[missing, k]).all()
    assert not np.isnan(matrix[~missing, k]).any()
    # works inside a Pipeline and survives clone
    pipe = clone(Pipeline([("features", fb)]))
    np.testing.assert_array_equal(pipe.fit_transform(training_frame), matrix)


def test_a_protected_column_never_reaches_the_matrix(config: Config, fresh_scored: object) -> None:
    sex = ColumnSpec(name="owner_sex", type="category", categories=("F", "M"), role="protected",
                     nullable=True)
    cfg = dataclasses.replace(config, columns=(*config.columns, sex))
    builder = FeatureBuilder.from_config(cfg).fit(fresh_scored.report.valid.head(20))
    assert "owner_sex" not in builder.base_features
    assert list(builder.get_feature_names_out()) == list(config.feature_names)
    frame = fresh_scored.report.valid.head(20).copy()
    frame["owner_sex"] = pd.Categorical(["F"] * 20, categories=["F", "M"])
    as_f = builder.transform(frame)
    frame["owner_sex"] = pd.Categorical(["M"] * 20, categories=["F", "M"])
    np.testing.assert_array_equal(builder.transform(frame), as_f)
