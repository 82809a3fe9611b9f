"""The matrix-free joint Newton–CG phase of intervention ``all`` (large problems) against the dense one,
and the Newton engine on a projected, barrier-constrained problem with both linear solvers."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsteer.solve import _common, _engine, _group, all_groups, closed_form
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


@pytest.mark.parametrize("shape, seed, c, gauge_symmetric", [((2, 2, 3), 1, 0, True), ((3, 2, 4), 2, 1, False),
                                                              ((2, 3, 5), 4, 0, False)])
def test_joint_gradient_and_hvp_match_autodiff_of_the_objective(shape, seed, c, gauge_symmetric):
    """The joint phase's closed-form gradient (envelope theorem) and its linearisation against JAX's
    derivatives of :func:`all_groups.objective` with the template from ``closed_form.template_update``,
    at a point away from any optimum (random maps and base rates)."""
    k, m, d = shape
    rng = np.random.default_rng(seed)
    q, mu, S = (jnp.asarray(x) for x in oracles.random_family(rng, k, m, d))
    sg = _common.subgroups(mu, S)
    A = jnp.asarray(np.eye(d) + 0.3 * rng.standard_normal((m, d, d)))
    A = A.at[0].set(A[0] @ A[0].T) if gauge_symmetric else A  # an SPD gauge map
    B = jnp.concatenate([A, jnp.asarray(rng.standard_normal((m, d, 1)))], axis=2)
    pi = jnp.asarray(rng.dirichlet(np.ones(k)))
    x0 = all_groups.Params(jnp.zeros((k, d)), jnp.broadcast_to(jnp.eye(d), (k, d, d)), B, pi)
    sym_mask = jnp.arange(m) == 0 if gauge_symmetric else jnp.zeros(m, bool)
    prob = all_groups.JointProblem(q, sg, sym_mask, c, x0)
    v = prob.v0

    def generic(v):
        return all_groups.objective(prob.params(v), q, sg)

    f, g = prob.value_and_grad(v)
    f_ref, g_ref = jax.value_and_grad(generic)(v)
    np.testing.assert_allclose(f, f_ref, rtol=1e-12)
    np.testing.assert_allclose(g, g_ref, rtol=1e-9, atol=1e-11 * float(jnp.max(jnp.abs(g_ref))))
    t = jnp.asarray(rng.standard_normal(v.shape))
    h = jax.jvp(lambda v: prob.value_and_grad(v)[1], (v,), (t,))[1]
    h_ref = jax.jvp(jax.grad(generic), (v,), (t,))[1]
    np.testing.assert_allclose(h, h_ref, rtol=1e-9, atol=1e-10 * float(jnp.max(jnp.abs(h_ref))))
    # The residual the engine sees, from the closed-form gradient and KLs, against every block's
    # residual computed another way: the one-group kernel's residual of each map for this template, the
    # template's own stationarity (autodiff; zero by construction) and the base rates' fixed point.
    x = prob.params(v)
    w = x.pi[:, None] * jnp.sum(q, axis=0)[None, :]
    tpl = _common.Template(x.u, x.G, jnp.linalg.slogdet(x.G)[1])
    r_maps = [float(_group.relative_residual(
        _common.group_problem(tpl, sg, a, w[:, a], bool(sym_mask[a])), x.B[a])) for a in range(m)]
    assert float(all_groups._template_residual(x, w, sg, c)) < 1e-12
    pi_star, _ = closed_form.prior_update(q, all_groups.subgroup_kls(x, sg))
    r_pi = float(jnp.sum(jnp.abs(pi_star - x.pi)))
    assert max(r_maps) > r_pi > 1e-3  # away from the optimum; the maps' block is the larger here,
    np.testing.assert_allclose(float(prob.point(v).res), max(r_maps), rtol=1e-10)
    # so the base rates' block is checked with the maps' gradient set to zero.
    kl = prob._evaluate(v)[2]
    np.testing.assert_allclose(float(prob.residual(v, jnp.zeros_like(v), kl)), r_pi, rtol=1e-10)


def test_factorisations_with_product_derivatives_match_jax():
    """``_decomp.inverse_logabsdet`` / ``spd_inverse_logdet`` and their matrix-product JVPs against
    ``jnp.linalg`` and its own derivative rules (and a central difference)."""
    from jaxsteer.solve import _decomp

    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.standard_normal((3, 5, 5)))
    Y = jnp.einsum("bij,bkj->bik", X, X) + jnp.eye(5)
    dX = jnp.asarray(rng.standard_normal((3, 5, 5)))
    dY = dX + jnp.swapaxes(dX, -1, -2)
    for fn, ref, Z, dZ in [
        (_decomp.inverse_logabsdet, lambda Z: (jnp.linalg.inv(Z), jnp.linalg.slogdet(Z)[1]), X, dX),
        (_decomp.spd_inverse_logdet, lambda Z: (jnp.linalg.inv(Z), jnp.linalg.slogdet(Z)[1]), Y, dY),
    ]:
        (inv, ld), (dinv, dld) = jax.jvp(jax.vmap(fn), (Z,), (dZ,))
        (inv_r, ld_r), (dinv_r, dld_r) = jax.jvp(ref, (Z,), (dZ,))
        np.testing.assert_allclose(inv, inv_r, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ld, ld_r, rtol=1e-12)
        np.testing.assert_allclose(dinv, dinv_r, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(dld, dld_r, rtol=1e-9)
        h = 1e-6
        fd = (jax.vmap(fn)(Z + h * dZ)[1] - jax.vmap(fn)(Z - h * dZ)[1]) / (2 * h)
        np.testing.assert_allclose(dld, fd, rtol=1e-6)
        # reverse mode goes through the same (linear) tangent rule
        gr = jax.grad(lambda Z: jnp.sum(jax.vmap(fn)(Z)[1]))(Z)
        np.testing.assert_allclose(gr, jax.grad(lambda Z: jnp.sum(ref(Z)[1]))(Z), rtol=1e-9, atol=1e-12)
    singular = jnp.zeros((2, 2)).at[0, 0].set(1.0)
    assert float(_decomp.inverse_logabsdet(singular)[1]) == -np.inf


def test_joint_retraction_rotates_and_agrees_to_first_order():
    """``JointProblem.retract``: a step whose template-coordinate part ``A⁻¹V`` is antisymmetric keeps
    ``A Aᵀ`` exactly (a rotation), the gauge group's symmetric map moves on a straight line, and the
    curve agrees with ``x + αp`` to first order (the gap shrinks as ``α²``)."""
    k, m, d = 2, 3, 4
    rng = np.random.default_rng(7)
    q, mu, S = (jnp.asarray(x) for x in oracles.random_family(rng, k, m, d))
    sg = _common.subgroups(mu, S)
    A = jnp.asarray(np.eye(d) + 0.3 * rng.standard_normal((m, d, d)))
    A = A.at[0].set(A[0] @ A[0].T)
    B = jnp.concatenate([A, jnp.asarray(rng.standard_normal((m, d, 1)))], axis=2)
    x0 = all_groups.Params(jnp.zeros((k, d)), jnp.broadcast_to(jnp.eye(d), (k, d, d)), B, jnp.array([0.3, 0.7]))
    prob = all_groups.JointProblem(q, sg, jnp.arange(m) == 0, 0, x0)
    pt = prob.point(prob.v0)
    Om = rng.standard_normal((m, d, d))
    Om = jnp.asarray(Om - np.swapaxes(Om, 1, 2))
    VA = jnp.einsum("aij,ajl->ail", A, Om).at[0].set(jnp.eye(d))  # rotations; the gauge map: + I
    p = prob.project(jax.flatten_util.ravel_pytree((jnp.concatenate([VA, jnp.zeros((m, d, 1))], 2),
                                                     jnp.array([0.0, 0.2])))[0])
    B1, z1 = prob.unravel(prob.retract(pt, p, 0.5))
    A1 = B1[:, :, :-1]
    np.testing.assert_allclose(A1[1:] @ jnp.swapaxes(A1[1:], 1, 2), A[1:] @ jnp.swapaxes(A[1:], 1, 2), atol=1e-12)
    assert float(jnp.max(jnp.abs(A1[1:] - A[1:]))) > 0.1  # it did move
    np.testing.assert_allclose(A1[0], A[0] + 0.5 * jnp.eye(d), atol=1e-14)
    np.testing.assert_allclose(z1, prob.unravel(pt.x)[1] + 0.5 * jnp.array([0.0, 0.2]), atol=1e-14)
    p = prob.project(jnp.asarray(rng.standard_normal(pt.x.shape)))
    gaps = [float(jnp.max(jnp.abs(prob.retract(pt, p, a) - (pt.x + a * p)))) for a in (1e-2, 1e-3)]
    assert 50 < gaps[0] / gaps[1] < 200, gaps  # O(α²)


@pytest.mark.slow
def test_all_affine_converges_on_real_embeddings_below_affirmative():
    """The d = 64 sentence-embedding family (tests/data/README.md), whose joint phase meets the nearly
    flat rotations of the affine maps: it converges, and ``all`` is no worse than ``affirmative``
    with either reference (each restart starts from one of those solutions)."""
    from pathlib import Path

    data = np.load(Path(__file__).parent / "data" / "income_minilm_pca64_family.npz")
    fam = js.GaussianFamily(priors=data["priors"], means=data["means"], covs=data["covs"])
    sol = js.nearest_ideal(fam, intervention="all", form="affine")
    assert int(sol.status) == js.Status.CONVERGED, float(sol.residual)
    for r in (0, 1):
        aff = js.nearest_ideal(fam, intervention="affirmative", form="affine", reference=r)
        assert float(sol.kl) <= float(aff.kl) + 1e-12, (r, float(sol.kl), float(aff.kl))
