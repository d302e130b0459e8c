"""Aggregate: per-response ratings -> the aggregated per-aspect pair dataset (METHOD.md 3.1).
"""
