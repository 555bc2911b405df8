"""Benchmarks: jrnn against peers measured in the same process.

Run as ``python -m experiments.benchmarks.NAME``.
"""
