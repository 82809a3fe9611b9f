"""The matrix-free joint Newton–CG phase of intervention ``all`` (large problems) against the dense one,
and the Newton engine on a projected, barrier-constrained problem with both linear solvers."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsteer.solve import _engine, all_groups
import jaxsteer as js
import oracles


def _solve(q, mu, S, symmetric, joint):
    fn = functools.partial(all_groups.solve_one, reference_class=0, symmetric=symmetric, tol=1e-10,
                           max_iter=100, use_closed_form=True, max_outer=30, joint=joint)
    return jax.jit(fn)(q, mu, S, jnp.asarray(0))


@pytest.mark.parametrize("shape, seed, symmetric", [((2, 2, 4), 3, True), ((3, 2, 3), 5, False)])
def test_joint_cg_matches_dense(shape, seed, symmetric):
    k, m, d = shape
    q, mu, S = (jnp.asarray(x) for x in oracles.random_family(np.random.default_rng(seed), k, m, d))
    dense = _solve(q, mu, S, symmetric, "dense")
    cg = _solve(q, mu, S, symmetric, "cg")
    assert int(dense.status) == js.Status.CONVERGED, float(dense.residual)
    assert int(cg.status) == js.Status.CONVERGED, float(cg.residual)
    kl = lambda o: float(o.target.kl_features + o.target.kl_priors)  # noqa: E731
    np.testing.assert_allclose(kl(cg), kl(dense), rtol=1e-10)
    np.testing.assert_allclose(cg.target.priors, dense.target.priors, atol=1e-8)
    np.testing.assert_allclose(cg.target.means, dense.target.means, atol=1e-6)
    np.testing.assert_allclose(cg.target.covs, dense.target.covs, atol=1e-6)


def test_joint_option_is_checked():
    q, mu, S = (jnp.asarray(x) for x in oracles.random_family(np.random.default_rng(0), 2, 2, 2))
    with pytest.raises(ValueError, match="joint"):
        _solve(q, mu, S, True, "sparse")


class _Barrier(_engine.Problem):
    """min ½xᵀHx − cᵀx − Σ log x_i subject to x_0 = x_1 (a projection), for the engine."""

    convex = True

    def __init__(self, H, c):
        self.H, self.c = H, c

    @staticmethod
    def project(v):
        mean = 0.5 * (v[0] + v[1])
        return v.at[0].set(mean).at[1].set(mean)

    def f(self, x):
        v = 0.5 * x @ self.H @ x - self.c @ x - jnp.sum(jnp.log(x))
        return jnp.where(jnp.all(x > 0), v, jnp.inf)

    def point(self, x):
        g = self.project(jax.grad(self.f)(x))
        return _engine.Point(x, self.f(x), g, jnp.linalg.norm(g))

    def hessian(self, pt):
        n = pt.x.shape[0]
        T = jax.vmap(self.project)
        return T(T(jax.hessian(self.f)(pt.x)).T) + jnp.eye(n) - T(jnp.eye(n))

    def hvp(self, pt):
        _, lin = jax.linearize(jax.grad(self.f), pt.x)
        return lambda v: (self.project(lin(self.project(v))), None)

    def precondition(self, pc, r):
        return self.project(r / jnp.diag(self.H))

    def metric(self, pc, v):
        return self.project(v * jnp.diag(self.H))


@pytest.mark.parametrize("linear", ["dense", "cg"])
def test_engine_projected_quadratic_and_log_barrier(linear):
    rng = np.random.default_rng(0)
    n = 6
    R = rng.normal(size=(n, n))
    H = jnp.asarray(R @ R.T + n * np.eye(n))
    c = jnp.asarray(rng.normal(size=n))
    prob = _Barrier(H, c)
    out = jax.jit(lambda x0: _engine.minimize(prob, x0, tol=1e-12, max_iter=50, linear=linear, max_cg=n))(
        jnp.full(n, 0.1))
    assert int(out.status) == _engine.Status.CONVERGED and float(out.point.res) <= 1e-12
    x = out.point.x
    assert float(x[0]) == pytest.approx(float(x[1]), abs=1e-15)
    # KKT: the gradient is orthogonal to the feasible directions, i.e. g_0 = −g_1 and g_i = 0 otherwise.
    g = jax.grad(prob.f)(x)
    np.testing.assert_allclose(g[0] + g[1], 0.0, atol=1e-10)
    np.testing.assert_allclose(g[2:], 0.0, atol=1e-10)
    # and it is the minimum: no feasible perturbation lowers f
    for _ in range(20):
        dv = prob.project(jnp.asarray(rng.normal(size=n)) * 1e-3)
        assert float(prob.f(x + dv)) >= float(prob.f(x)) - 1e-14
