"""Forecasting and anomaly detection on the marts (LightGBM, tracked in MLflow): not built yet.

This package reads marts only, never raw tables.
"""
