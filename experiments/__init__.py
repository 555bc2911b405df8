"""Runnable studies built on jrnn: ``python -m experiments.NAME``."""
