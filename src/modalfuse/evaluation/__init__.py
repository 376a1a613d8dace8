"""Evaluation: BEIR-layout datasets, the evaluation index, modes, metrics, tuning, reports."""
