"""Forecasting, anomaly detection and experiment analysis on the marts, tracked in MLflow.

`training` backtests, fits and registers the LightGBM forecaster (`forecaster`) against the
statistical baselines; `forecasting` and `insights` turn the registered champions into the rows of
`ml.forecast_daily` and `ml.insights`; `experiments` analyses A/B tests. See `ml/README.md`.

This package reads marts only, never raw tables.
"""
