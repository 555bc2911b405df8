"""Runnable studies built on jrnn: ``python -m experiments.NAME``.

Importing this package has no side effects: each study's ``main`` applies the
host settings it needs (:func:`jrnn.host.configure_xla`) when it starts.
"""
