"""Streamlit helpers of the FinFlow app: session, sign-in guard, cached resources, formatting.

UI glue only: every figure, rule and change comes from ``finflow_core``.
"""
