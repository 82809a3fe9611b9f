"""jaxsteer.losses: ideal_gap (envelope gradient, warm start, jit) and kl_to_target.

Compiling the solver dominates the run time, so every test reuses a few jitted functions (one per
solver configuration) with the batch as traced arguments.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxsteer as js
from jaxsteer import losses
from jaxsteer import nn as jsn
from jaxsteer.datasets import make_gaussian_family

K = M = 2
D = 3
N = 400
KW = dict(num_classes=K, num_groups=M)


def _batch(seed=0, mean_scale=1.0):
    fam = make_gaussian_family(jax.random.PRNGKey(seed), K, M, D, mean_scale=mean_scale)
    return fam.sample(jax.random.PRNGKey(seed + 100), N)


@functools.lru_cache(maxsize=None)
def _value_and_grad(intervention="affirmative", form="symmetric", warm=False):
    """jit(value_and_grad) of ideal_gap in (h, sample_weight), with the solution as aux output."""

    def f(h, y, a, w, shrinkage, sol):
        return losses.ideal_gap(h, y, a, **KW, intervention=intervention, form=form, shrinkage=shrinkage,
                                sample_weight=w, warm_start=sol if warm else None, return_solution=True)

    return jax.jit(jax.value_and_grad(f, argnums=(0, 3), has_aux=True))


def _gap(h, y, a, w=None, shrinkage=0.1, sol=None, intervention="affirmative", form="symmetric"):
    w = jnp.ones(h.shape[0]) if w is None else w
    fn = _value_and_grad(intervention, form, sol is not None)  # positional: one cache entry per config
    (value, solution), (gh, gw) = fn(h, y, a, w, shrinkage, sol)
    return value, solution, gh, gw


def _direction(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape))


VARIANTS = [("affirmative", "symmetric"), ("affirmative", "affine"), ("all", "symmetric")]


@pytest.mark.parametrize("intervention, form", VARIANTS)
def test_value_and_gradient_match_solver_and_finite_differences(intervention, form):
    opts = dict(intervention=intervention, form=form)
    h, y, a = _batch(1)
    value, sol, gh, _ = _gap(h, y, a, **opts)
    # the cold path returns nearest_ideal's own solution: its KL is the solver's value
    np.testing.assert_allclose(value, sol.kl, rtol=1e-12)
    assert bool(sol.converged) and sol.intervention == intervention and sol.form == form
    eps, v = 1e-6, _direction(0, h.shape)
    fd = (_gap(h + eps * v, y, a, **opts)[0] - _gap(h - eps * v, y, a, **opts)[0]) / (2 * eps)
    np.testing.assert_allclose(jnp.vdot(gh, v), fd, rtol=1e-6)


def test_gradient_in_sample_weight():
    h, y, a = _batch(2)
    w = jnp.asarray(np.random.default_rng(1).uniform(0.5, 1.5, size=y.shape))
    value, _, gh, gw = _gap(h, y, a, w)
    eps, v = 1e-6, _direction(2, w.shape)
    fd = (_gap(h, y, a, w + eps * v)[0] - _gap(h, y, a, w - eps * v)[0]) / (2 * eps)
    np.testing.assert_allclose(jnp.vdot(gw, v), fd, rtol=1e-6)
    assert np.isfinite(float(value))


def test_warm_start_matches_cold_without_recompiling():
    h, y, a = _batch(3)
    _, sol, _, _ = _gap(h, y, a)
    h2 = h + 0.05 * _direction(3, h.shape)
    cold, cold_sol, cold_grad, _ = _gap(h2, y, a)
    warm, warm_sol, warm_grad, _ = _gap(h2, y, a, sol=sol)
    np.testing.assert_allclose(warm, cold, rtol=1e-10)
    np.testing.assert_allclose(warm_sol.target.means, cold_sol.target.means, atol=1e-8)
    np.testing.assert_allclose(warm_sol.target.covs, cold_sol.target.covs, atol=1e-8)
    np.testing.assert_allclose(warm_sol.maps.A, cold_sol.maps.A, atol=1e-8)
    np.testing.assert_allclose(warm_sol.kl, cold_sol.kl, rtol=1e-10)
    np.testing.assert_allclose(warm_grad, cold_grad, atol=1e-10)
    assert bool(warm_sol.converged) and int(warm_sol.iterations) < int(cold_sol.iterations)
    # the warm solution has the cold one's structure and dtypes: chaining does not retrace
    fn = _value_and_grad("affirmative", "symmetric", True)
    size = fn._cache_size()
    _, again, _, _ = _gap(h2 + 0.01, y, a, sol=warm_sol)
    assert fn._cache_size() == size
    assert jax.tree.structure(again) == jax.tree.structure(cold_sol)


def test_argument_errors():
    h, y, a = _batch(3)
    _, sol, _, _ = _gap(h, y, a)
    with pytest.raises(ValueError, match="warm_start: solved with"):
        losses.ideal_gap(h, y, a, **KW, intervention="all", warm_start=sol)
    with pytest.raises(ValueError, match="tol"):
        losses.ideal_gap(h, y, a, **KW, tol=-1.0)
    with pytest.raises(ValueError, match="max_iter"):
        losses.ideal_gap(h, y, a, **KW, max_iter=0)
    with pytest.raises(ValueError, match="solved with"):
        losses.ideal_gap(h, y, a, **KW, form="affine", warm_start=sol)
    with pytest.raises(TypeError, match="Solution"):
        losses.ideal_gap(h, y, a, **KW, warm_start=sol.maps)
    with pytest.raises(ValueError, match="h: expected"):
        losses.ideal_gap(h[0], y, a, **KW)
    with pytest.raises(ValueError, match="intervention"):
        losses.ideal_gap(h, y, a, **KW, intervention="some")
    with pytest.raises(ValueError, match="class 1, group 1 has 0"):
        losses.ideal_gap(h, y * (a == 0), a, **KW)
    with pytest.raises(ValueError, match="out of range"):
        losses.ideal_gap(h, y, a + 1, **KW)
    # Frequency weights whose total in a cell is <= ddof: a clear error, not a silent NaN.
    cell = np.asarray((y == 1) & (a == 1))
    w = np.where(cell, 0.5 / max(cell.sum(), 1), 1.0)
    with pytest.raises(ValueError, match="class 1, group 1 has total weight"):
        losses.ideal_gap(h, y, a, **KW, sample_weight=w)
    assert np.isfinite(float(losses.ideal_gap(h, y, a, **KW, sample_weight=w, ddof=0)))


def test_sizes_inferred_from_concrete_codes():
    h, y, a = _batch(3)
    np.testing.assert_array_equal(losses.ideal_gap(h, y, a), losses.ideal_gap(h, y, a, **KW))
    # a batch without the last group: m is inferred as 1 (an error naming the sizes), where the
    # explicit m = 2 finds that group's cells empty
    keep = np.asarray(a) < 1
    with pytest.raises(ValueError, match=r"need at least 2 of each, got 2, 1"):
        losses.ideal_gap(h[keep], y[keep], a[keep])
    with pytest.raises(ValueError, match="group 1 has 0 rows"):
        losses.ideal_gap(h[keep], y[keep], a[keep], **KW)
    with pytest.raises(ValueError, match=r"^num_groups: required when a is traced"):
        jax.jit(lambda h, y, a: losses.ideal_gap(h, y, a, num_classes=2))(h, y, a)
    with pytest.raises(ValueError, match=r"^num_classes: expected a Python int"):
        losses.ideal_gap(h, y, a, num_classes=2.0)


def test_kl_to_target():
    h, y, a = _batch(4)
    gap, sol, g_gap, _ = _gap(h, y, a, intervention="all", form="symmetric")
    fit = js.fit_family(h, y, a, shrinkage=0.1)
    kl_fn = jax.jit(jax.value_and_grad(lambda h, t: losses.kl_to_target(h, y, a, t, shrinkage=0.1)))
    kl, g_kl = kl_fn(h, sol.target)
    np.testing.assert_allclose(kl, js.kl_divergence(sol.target, fit), rtol=1e-12)
    np.testing.assert_allclose(kl, gap, rtol=1e-10)
    # for 'all' the envelope gradient is the gradient of the KL to the fixed target (q̃ = π p follows
    # the group marginals, which do not depend on h)
    np.testing.assert_allclose(g_kl, g_gap, atol=1e-10)
    eps, v = 1e-6, _direction(4, h.shape)
    fd = (kl_fn(h + eps * v, sol.target)[0] - kl_fn(h - eps * v, sol.target)[0]) / (2 * eps)
    np.testing.assert_allclose(jnp.vdot(g_kl, v), fd, rtol=1e-6)
    np.testing.assert_allclose(losses.kl_to_target(h, y, a, sol, shrinkage=0.1), kl, rtol=1e-12)
    with pytest.raises(ValueError, match="h: expected"):
        losses.kl_to_target(h[:, :2], y, a, sol.target)


def test_training_a_steer_decreases_ideal_gap():
    """A trainable Steer in front of a warm-started ideal_gap, stepped by nnx.Optimizer."""
    x, y, a = _batch(5, mean_scale=1.5)
    steer = jsn.Steer.identity(D, M, trainable=True)
    opt = nnx.Optimizer(steer, optax.adam(0.05), wrt=nnx.Param)

    @nnx.jit
    def update(steer, opt, grad_h):
        # chain rule through the steer: d gap / d params = (d gap / d h) · (d h / d params)
        grads = nnx.grad(lambda s: jnp.vdot(s(x, a), grad_h))(steer)
        opt.update(steer, grads)

    gap0, sol, _, _ = _gap(x, y, a)
    fn = _value_and_grad("affirmative", "symmetric", True)
    gaps, sizes = [], []
    for _ in range(25):
        gap, sol, grad_h, _ = _gap(steer(x, a), y, a, sol=sol)
        update(steer, opt, grad_h)
        gaps.append(float(gap))
        sizes.append(fn._cache_size())
    assert len(set(sizes)) == 1  # no recompilation between steps
    assert gaps[-1] < 0.5 * float(gap0), (float(gap0), gaps)
    assert bool(sol.converged)
