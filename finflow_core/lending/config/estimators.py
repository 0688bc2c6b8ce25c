"""Model parameters checked against the estimator they are for, when the config is read.

A typo (``n_estimator``) or a quoted number (``"300"``) would otherwise surface as a long
traceback at training, or, for LightGBM, not at all: its scikit-learn wrapper takes any
keyword and passes it on, and LightGBM ignores names it does not know. So:

* scikit-learn estimators: names from ``get_params()``, values against the estimator's own
  declared parameter constraints;
* LightGBM: names from the wrapper's signature plus LightGBM's real parameter list and
  aliases (asked from the library), wrapper values by the type of their default, and
  every core value through LightGBM's own parser on a four-row data set.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib
import inspect
import os
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from finflow_core.lending.config.fields import FrozenParams, Problem

_ESTIMATORS = {
    "random_forest": ("sklearn.ensemble", "RandomForestClassifier"),
    "hist_gradient_boosting": ("sklearn.ensemble", "HistGradientBoostingClassifier"),
    "lightgbm": ("lightgbm", "LGBMClassifier"),
}
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
#: LightGBM wrapper settings that are not LightGBM parameters (not passed to its parser).
_WRAPPER_ONLY = ("class_weight", "importance_type")


def check_params(candidate: str, params: FrozenParams) -> None:
    """Raise :class:`Problem` (at ``(candidate, parameter)``) for a parameter the estimator refuses."""
    if params:
        _check(candidate, params)


@functools.cache
def _check(candidate: str, params: FrozenParams) -> None:  # cached: successes only
    module, name = _ESTIMATORS[candidate]
    cls = getattr(importlib.import_module(module), name)
    for key, value in params.items():
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            raise Problem(f"{value!r} is a number in quotes: write it without quotes "
                          f"({value.strip()})", (candidate, key))
    if candidate == "lightgbm":
        _check_lightgbm(cls, params)
    else:
        _check_sklearn(cls, candidate, params)


def _check_sklearn(cls: type, candidate: str, params: FrozenParams) -> None:
    known = set(cls().get_params())
    for key in params:
        if key not in known:
            raise Problem(f"unknown parameter of {cls.__name__}{did_you_mean(key, known)}",
                          (candidate, key))
    try:
        from sklearn.utils._param_validation import (
            InvalidParameterError,
            validate_parameter_constraints,
        )
    except ImportError:  # a scikit-learn without declared constraints: names are checked
        return
    constraints = getattr(cls, "_parameter_constraints", {})
    for key, value in params.to_dict().items():
        if key not in constraints:
            continue
        try:
            validate_parameter_constraints({key: constraints[key]}, {key: value},
                                           caller_name=cls.__name__)
        except InvalidParameterError as exc:
            raise Problem(_sklearn_message(str(exc), cls.__name__), (candidate, key)) from None


def _sklearn_message(text: str, owner: str) -> str:
    m = re.search(r"must be (.*)\. Got (.*) instead\.", text, flags=re.DOTALL)
    return f"must be {m[1]}, got {m[2]} ({owner})" if m else text


def _check_lightgbm(cls: type, params: FrozenParams) -> None:
    wrapper = {
        k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
        if k not in ("self", "kwargs") and p.kind is not p.VAR_KEYWORD
    }
    aliases = _lightgbm_aliases()
    known = set(wrapper) | {a for group in aliases.values() for a in group}
    for key, value in params.items():
        if key not in known:
            raise Problem(f"unknown parameter of LightGBM{did_you_mean(key, known)}",
                          ("lightgbm", key))
        if key in wrapper:
            _check_by_default(key, value, wrapper[key])
    core = {k: v for k, v in params.to_dict().items() if k not in _WRAPPER_ONLY}
    if core:
        _probe_lightgbm(core, aliases)


@functools.cache
def _lightgbm_aliases() -> dict[str, tuple[str, ...]]:
    """LightGBM's parameter names and their aliases, from the library itself."""
    from lightgbm.basic import _ConfigAliases

    return {k: tuple(v) for k, v in _ConfigAliases._get_all_param_aliases().items()}


def _check_by_default(key: str, value: Any, default: Any) -> None:
    """The wrapper declares no types: a value must be of its default's kind."""
    if default is None or value is None:
        return
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "a whole number"
    elif isinstance(default, float):
        ok, kind = isinstance(value, int | float) and not isinstance(value, bool), "a number"
    elif isinstance(default, str):
        ok, kind = isinstance(value, str), "text"
    else:
        return
    if not ok:
        raise Problem(f"must be {kind}, got {value!r}", ("lightgbm", key))


class _Silent:
    """Stands in for LightGBM's logger while its parser is asked (it logs a 'Fatal' line)."""

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """LightGBM's C++ side also prints a refused parameter straight to stderr: hold it back."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded): nothing to hold back
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _probe_lightgbm(params: dict[str, Any], aliases: dict[str, tuple[str, ...]]) -> None:
    import lightgbm
    import lightgbm.basic as basic
    import numpy as np

    quiet = {} if set(params) & set(aliases.get("verbosity", ("verbosity",))) else {"verbose": -1}
    logger = basic._LOGGER
    basic._LOGGER = _Silent()
    try:
        with _quiet_native_stderr():
            data = lightgbm.Dataset(np.arange(8.0).reshape(4, 2), label=np.array([0, 1, 0, 1]),
                                    params={**params, **quiet})
            lightgbm.Booster(params={**params, **quiet}, train_set=data)
    except lightgbm.basic.LightGBMError as exc:
        text = str(exc).strip().splitlines()[0]
        m = re.match(r"Parameter (\w+)", text)
        key = _user_key(m[1], params, aliases) if m else None
        raise Problem(f"LightGBM refuses it: {text}", ("lightgbm", key) if key else ("lightgbm",)
                      ) from None
    finally:
        basic._LOGGER = logger


def _user_key(main: str, params: dict[str, Any], aliases: dict[str, tuple[str, ...]]) -> str | None:
    group = aliases.get(main, (main,))
    return next((k for k in params if k in group), None)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """'; did you mean X?' for a near miss, else ''."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""
