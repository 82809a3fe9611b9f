"""Test configuration: float64 by default (the reference precision), fast XLA compiles, shared fixtures."""

import os

# Tests are dominated by XLA compile time, not run time: skip the expensive backend passes.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import jaxsteer as js  # noqa: E402


def random_family_arrays(rng, k, m, d, batch=()):
    """Well-conditioned random family parameters (numpy): distinct covariances, unequal base rates."""
    q = rng.uniform(0.5, 1.5, size=batch + (k, m))
    q /= q.sum(axis=(-2, -1), keepdims=True)
    mu = rng.normal(size=batch + (k, m, d))
    x = rng.normal(size=batch + (k, m, d, d))
    cov = x @ np.swapaxes(x, -1, -2) / d + 0.3 * np.eye(d)
    return q, mu, cov


def random_family(rng, k, m, d, batch=()):
    q, mu, cov = random_family_arrays(rng, k, m, d, batch)
    return js.GaussianFamily(priors=q, means=mu, covs=cov)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
