import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsteer import _linalg


def _spd(rng, d, iso=False):
    if iso:
        return 2.5 * np.eye(d)
    x = rng.normal(size=(d, d))
    return x @ x.T / d + 0.2 * np.eye(d)


@pytest.mark.parametrize("iso", [False, True])
def test_roots_inverse_logdet(rng, iso):
    s = jnp.asarray(_spd(rng, 4, iso))
    r, ir = _linalg.psd_sqrt_and_inv_sqrt(s)
    np.testing.assert_allclose(r @ r, s, atol=1e-12)
    np.testing.assert_allclose(ir @ s @ ir, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(_linalg.psd_inv(s) @ s, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(_linalg.psd_logdet(s), np.linalg.slogdet(np.asarray(s))[1], rtol=1e-12)
    np.testing.assert_allclose(_linalg.spd_solve(s, jnp.ones(4)), np.linalg.solve(s, np.ones(4)), rtol=1e-10)


def test_batched(rng):
    s = jnp.asarray(np.stack([_spd(rng, 3) for _ in range(5)]))
    r = _linalg.psd_sqrt(s)
    for i in range(5):
        np.testing.assert_allclose(r[i], _linalg.psd_sqrt(s[i]), atol=1e-13)


@pytest.mark.parametrize("fn", [_linalg.psd_sqrt, _linalg.psd_inv_sqrt])
@pytest.mark.parametrize("iso", [False, True])
def test_derivative_matches_finite_differences(rng, fn, iso):
    """The Daleckii–Krein rule is finite and exact, also at repeated eigenvalues (iso)."""
    s = jnp.asarray(_spd(rng, 3, iso))
    ds = rng.normal(size=(3, 3))
    ds = jnp.asarray(ds + ds.T)
    _, jvp = jax.jvp(fn, (s,), (ds,))
    h = 1e-6
    fd = (fn(s + h * ds) - fn(s - h * ds)) / (2 * h)
    assert np.all(np.isfinite(jvp))
    np.testing.assert_allclose(jvp, fd, atol=1e-7)
    # reverse mode too
    g = jax.grad(lambda x: jnp.sum(fn(x) * ds))(s)
    assert np.all(np.isfinite(g))
