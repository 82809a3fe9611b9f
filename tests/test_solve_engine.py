"""The solver's contract as a JAX library: status codes, validated limits, warm starts, traced options
that do not recompile, and batch layouts that agree."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsteer as js
from jaxsteer.solve import compiled_programs
import oracles

VARIANTS = [("affirmative", "symmetric"), ("affirmative", "affine"), ("all", "symmetric"), ("all", "affine")]


def _family(seed, k=2, m=2, d=3, n=None):
    rng = np.random.default_rng(seed)
    if n is None:
        return js.GaussianFamily(*oracles.random_family(rng, k, m, d))
    arrays = [oracles.random_family(rng, k, m, d) for _ in range(n)]
    return js.GaussianFamily(*(np.stack(x) for x in zip(*arrays)))


def _nudge(fam, seed, size=0.02):
    """A nearby family: means shifted and covariances scaled by a few per cent."""
    rng = np.random.default_rng(seed)
    dmu = size * rng.normal(size=fam.means.shape)
    scale = 1.0 + size * rng.uniform(-1, 1, size=fam.covs.shape[:-2])
    return fam.replace(means=fam.means + dmu, covs=fam.covs * scale[..., None, None])


# ---------------------------------------------------------------------------------------------
# Status codes


@pytest.mark.parametrize("intervention, form", VARIANTS)
def test_converged_is_status_converged(intervention, form):
    sol = js.nearest_ideal(_family(1, n=2), intervention=intervention, form=form)
    assert sol.status.dtype == jnp.int32
    np.testing.assert_array_equal(sol.converged, sol.status == js.Status.CONVERGED)
    assert np.all(np.asarray(sol.status) == js.Status.CONVERGED)
    assert sol.messages() == [js.status_message(js.Status.CONVERGED)]


def test_max_iter_status_and_message():
    sol = js.nearest_ideal(_family(2, d=4), form="affine", max_iter=1)
    assert int(sol.status) == js.Status.MAX_ITER and not bool(sol.converged)
    assert float(sol.residual) > 1e-10
    assert "max_iter" in sol.messages()[0]


def test_rounding_floor_is_stalled_not_converged():
    """A tolerance below the rounding of float64 cannot be met: the solver says it stalled."""
    sol = js.nearest_ideal(_family(3, d=4), tol=1e-30, max_iter=200)
    assert int(sol.status) == js.Status.STALLED and not bool(sol.converged)
    assert int(sol.iterations) < 200
    assert float(sol.residual) < 1e-12  # it did get to the floor


@pytest.mark.parametrize("d", [1, 3])
@pytest.mark.parametrize("intervention", ["affirmative", "all"])
def test_nonfinite_family_under_jit_is_never_converged(d, intervention):
    fam = _family(4, d=d)
    bad = fam.replace(means=fam.means.at[1, 1, 0].set(jnp.nan))
    sol = jax.jit(lambda f: js.nearest_ideal(f, intervention=intervention))(bad)
    assert int(sol.status) == js.Status.NONFINITE, int(sol.status)
    assert not bool(sol.converged)


def test_no_minimiser_is_reported():
    """all/symmetric on a family whose infimum is on the boundary: tests/test_solve.py's (3, 2, 5) batch,
    family 1, where the oracle's runs drift to π_c → 0 (test_matches_oracle checks the same status)."""
    rng = np.random.default_rng(100 + 10 * 3 + 2 + 7 * 5)
    arrays = [oracles.random_family(rng, 3, 2, 5) for _ in range(2)]
    sol = js.nearest_ideal(js.GaussianFamily(*arrays[1]), intervention="all", form="symmetric")
    assert int(sol.status) == js.Status.NO_MINIMISER
    assert float(jnp.min(sol.template.base_rates)) < 1e-4
    assert "reference_class" in sol.messages()[0]


@pytest.mark.parametrize("bad, match", [
    (dict(tol=-1.0), "tol"), (dict(tol=float("nan")), "tol"), (dict(tol=float("inf")), "tol"), (dict(tol=0.0), "tol"),
    (dict(tol="small"), "tol"), (dict(max_iter=0), "max_iter"), (dict(max_iter=2.5), "max_iter"),
    (dict(max_iter=True), "max_iter"), (dict(max_outer=0), "max_outer"), (dict(chunk_size="big"), "chunk_size"),
    (dict(lockstep="yes"), "lockstep"),
])
def test_bad_limits_are_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        js.nearest_ideal(_family(5), **bad)


def test_steerer_warning_says_why():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(400, 4))
    y = rng.integers(0, 2, 400)
    a = rng.integers(0, 2, 400)
    X[y == 1] += 1.0
    X[a == 1] *= 1.5
    with pytest.warns(RuntimeWarning, match="max_iter"):
        js.Steerer(form="affine", max_iter=1).fit(X, y, a)


# ---------------------------------------------------------------------------------------------
# Warm starts


@pytest.mark.parametrize("intervention, form", VARIANTS)
def test_warm_start_same_optimum_in_fewer_iterations(intervention, form):
    fam = _family(7, k=2, m=2, d=4 if intervention == "affirmative" else 2)
    near = _nudge(fam, 8)
    cold = js.nearest_ideal(near, intervention=intervention, form=form)
    start = js.nearest_ideal(fam, intervention=intervention, form=form)
    warm = js.nearest_ideal(near, intervention=intervention, form=form, init=start)
    assert bool(cold.converged) and bool(warm.converged)
    np.testing.assert_allclose(float(warm.kl), float(cold.kl), rtol=1e-9)
    np.testing.assert_allclose(warm.target.means, cold.target.means, atol=1e-6)
    np.testing.assert_allclose(warm.target.covs, cold.target.covs, atol=1e-6)
    assert int(warm.iterations) < int(cold.iterations), (int(warm.iterations), int(cold.iterations))


def test_warm_start_from_the_optimum_takes_no_step_and_batches():
    fams = _family(9, n=3)
    sol = js.nearest_ideal(fams, form="affine")
    again = js.nearest_ideal(fams, form="affine", init=sol)
    np.testing.assert_array_equal(again.iterations, 0)
    np.testing.assert_allclose(again.kl, sol.kl, rtol=1e-12)
    evaluated = js.nearest_ideal(_nudge(fams, 10), form="affine", init=sol, max_iter=0)
    assert np.all(np.asarray(evaluated.iterations) == 0)
    assert np.all(np.asarray(evaluated.status) != js.Status.CONVERGED)


def test_warm_start_checks():
    fam = _family(11)
    sol = js.nearest_ideal(fam)
    with pytest.raises(ValueError, match="init"):
        js.nearest_ideal(fam, form="affine", init=sol)
    with pytest.raises(ValueError, match="init"):
        js.nearest_ideal(fam, reference=1, init=sol)
    with pytest.raises(ValueError, match="init"):
        js.nearest_ideal(_family(11, n=2), init=sol)
    with pytest.raises(TypeError, match="init"):
        js.nearest_ideal(fam, init=sol.target)
    with pytest.raises(ValueError, match="max_iter"):
        js.nearest_ideal(fam, max_iter=0)


# ---------------------------------------------------------------------------------------------
# Traced options: new values do not recompile


def test_tol_max_iter_max_outer_do_not_recompile():
    fam = _family(12, n=2)
    js.nearest_ideal(fam, intervention="all", tol=1e-8, max_iter=50, max_outer=5)
    before = compiled_programs()
    a = js.nearest_ideal(fam, intervention="all", tol=1e-9, max_iter=60, max_outer=7)
    b = js.nearest_ideal(fam, intervention="all", tol=1e-11, max_iter=300, max_outer=30)
    assert compiled_programs() == before
    assert np.all(np.asarray(a.residual) <= 1e-9) and np.all(np.asarray(b.residual) <= 1e-11)


def test_jitted_caller_passes_arrays():
    fam = _family(13)
    traces = []

    @jax.jit
    def solve(f, tol, max_iter):
        traces.append(1)
        return js.nearest_ideal(f, form="affine", tol=tol, max_iter=max_iter)

    loose = solve(fam, jnp.asarray(1e-3), jnp.asarray(300))
    tight = solve(fam, jnp.asarray(1e-11), jnp.asarray(300))
    capped = solve(fam, jnp.asarray(1e-11), jnp.asarray(1))
    assert len(traces) == 1
    assert float(loose.residual) <= 1e-3 and float(tight.residual) <= 1e-11
    assert int(loose.iterations) < int(tight.iterations)
    assert int(capped.status) == js.Status.MAX_ITER


# ---------------------------------------------------------------------------------------------
# Batch layouts


@pytest.mark.parametrize("intervention, form", [("affirmative", "symmetric"), ("affirmative", "affine"),
                                                ("all", "symmetric")])
def test_layouts_agree(intervention, form):
    """One by one (the CPU default), one vmapped batch, chunks, and the fixed-shape lock-step loops
    of accelerators (run here on the CPU) reach the same optima (matrix-free steps at d = 8; the
    joint phase of ``all``, on the same engine, at d = 2)."""
    fams = _family(14, k=2, m=2, d=8 if intervention == "affirmative" else 2, n=3)
    opts = dict(intervention=intervention, form=form)
    ref = js.nearest_ideal(fams, chunk_size=1, **opts)
    assert np.all(np.asarray(ref.converged))
    for layout in (dict(chunk_size=None), dict(chunk_size=2), dict(chunk_size=None, lockstep=True)):
        other = js.nearest_ideal(fams, **layout, **opts)
        assert np.all(np.asarray(other.converged)), layout
        np.testing.assert_allclose(other.kl, ref.kl, rtol=1e-10, err_msg=str(layout))
        np.testing.assert_allclose(other.target.covs, ref.target.covs, atol=1e-7, err_msg=str(layout))
