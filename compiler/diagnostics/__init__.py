"""Plots for the artifact's report (matplotlib, compile-time only: the runtime never needs it)."""
