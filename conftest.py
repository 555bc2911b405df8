"""Doctests of jrnn's public docstrings (collected by ``python -m pytest``): the names
every ``>>>`` example may use without importing them."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest


@pytest.fixture(autouse=True, scope="session")
def _doctest_names(doctest_namespace):
    import jrnn

    doctest_namespace.update(jax=jax, jnp=jnp, np=np, optax=optax, jrnn=jrnn)
