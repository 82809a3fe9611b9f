"""Test configuration: float64 by default (the reference precision), fast XLA compiles, shared fixtures."""

import os

from xla_flags import flags_for_tests

# Flags set by the caller win. pytest-xdist's workers inherit the variable from the controlling
# process, which imports this file first, so the probe runs once per test session.
if "XLA_FLAGS" not in os.environ:
    os.environ["XLA_FLAGS"] = flags_for_tests()

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


#: Release compiled programs once a test process holds this many memory mappings.
MAPPINGS_SOFT_LIMIT = 30_000


def _mappings() -> int:
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:  # not Linux
        return 0


@pytest.fixture(autouse=True)
def _release_compiled_programs():
    """Keep a long-lived test process below Linux's cap on memory mappings.

    XLA:CPU loads every compiled kernel into three memory mappings of its own (code, read-only data,
    data), and a solver program has hundreds to thousands of kernels. Linux caps a process at
    ``vm.max_map_count`` mappings (65,530 by default); a compile that needs more fails inside LLVM
    ("Cannot allocate memory") and XLA then segfaults. A pytest-xdist worker that runs a few hundred
    tests reaches the cap (measured: ~10,000 new mappings per minute of solver tests), so after any
    test that leaves the process above ``MAPPINGS_SOFT_LIMIT`` the compiled programs are dropped
    (``jax.clear_caches()`` unmaps them; later tests recompile what they need).
    """
    yield
    if _mappings() > MAPPINGS_SOFT_LIMIT:
        jax.clear_caches()


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
