"""Evaluation: the time-based backtest (``evaluate``) and the self-contained HTML report."""
