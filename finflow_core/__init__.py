"""FinFlow core: validation, models, strategy, scoring, explanations, drift, storage, auth.

Pure Python and pandas: the Streamlit app and the ``finflow`` command both call into it.
"""

__version__ = "0.1.0"
