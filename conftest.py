"""Doctests of jrnn's public docstrings (collected by ``python -m pytest``): the names
every ``>>>`` example may use without importing them, and the user's default JAX
config (float32: ``jax_enable_x64`` off; rank promotion allowed), whatever tests/conftest.py
sets for the tests."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest


@pytest.fixture(autouse=True, scope="session")
def _doctest_names(doctest_namespace):
    import jrnn

    doctest_namespace.update(jax=jax, jnp=jnp, np=np, optax=optax, jrnn=jrnn)


@pytest.fixture(autouse=True)
def _doctest_default_config(request):
    if type(request.node).__name__ != "DoctestItem":
        yield
        return
    with jax.enable_x64(False), jax.numpy_rank_promotion("allow"):
        yield
