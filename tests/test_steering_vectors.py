"""Group-fair steering vectors (jaxsteer.steering_vectors): the map, the direction and the Flax module."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxsteer as js
from jaxsteer import nn as jsn
from jaxsteer import steering_vectors as sv


def _data(seed=0, n=3000, d=3, k=2):
    """Hidden-state-like data whose groups differ in class means, spread and base rates."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n)
    base = np.where(a == 1, 0.4, 0.2)
    y = (rng.random(n) < base).astype(int) if k == 2 else rng.integers(0, k, n)
    shift = np.linspace(1.0, 0.2, d)
    H = rng.normal(size=(n, d)) * (1 + 0.5 * a[:, None]) + y[:, None] * shift * (1 + a[:, None]) + 0.3 * a[:, None]
    return H, y, a


@pytest.fixture(scope="module")
def fitted():
    H, y, a = _data()
    return H, y, a, sv.fair_steering(H, y, a, form="symmetric")


def _direction_in_every_group(fs, toward=1, away=0):
    """``A_a⁻¹(μ̃_toward,a − μ̃_away,a)`` for every group, from the target family and the solution's maps."""
    tgt, A = np.asarray(fs.solution.target.means), np.asarray(fs.solution.maps.A)
    return np.stack([np.linalg.solve(A[g], tgt[toward, g] - tgt[away, g]) for g in range(A.shape[0])])


def test_map_equals_steerer_align_and_direction_is_shared(fitted):
    H, y, a, fs = fitted
    st = js.Steerer(form="symmetric", map="align").fit(H, y, a)
    np.testing.assert_allclose(np.asarray(fs.map.A), np.asarray(st.group_map_.A), atol=1e-10)
    np.testing.assert_allclose(np.asarray(fs.map.b), np.asarray(st.group_map_.b), atol=1e-10)
    per_group = _direction_in_every_group(fs)
    np.testing.assert_allclose(per_group[0], per_group[1], atol=1e-7)  # one direction for every group
    np.testing.assert_allclose(np.asarray(fs.direction), per_group[0], atol=1e-7)
    # the raw per-group mean differences are not shared: the data are far from ideal
    raw = [H[(y == 1) & (a == g)].mean(0) - H[(y == 0) & (a == g)].mean(0) for g in (0, 1)]
    assert np.linalg.norm(raw[0] - raw[1]) > 0.5
    # affirmative: the reference (largest) group is not moved before α v is added
    ref = int(np.argmax(np.bincount(a)))
    np.testing.assert_allclose(np.asarray(fs.map.A[ref]), np.eye(3), atol=1e-10)
    np.testing.assert_allclose(np.asarray(fs.apply(H[:5], np.full(5, ref), 2.0)),
                               H[:5] + 2.0 * np.asarray(fs.direction), atol=1e-10)


def test_steered_ideal_family_has_the_same_class_laws_in_every_group(fitted):
    """T_a pushes N(μ̃_ia, Σ̃_ia) to one law per class; adding α v shifts it identically."""
    _, _, _, fs = fitted
    tgt = fs.solution.target
    A, b = np.asarray(fs.map.A), np.asarray(fs.map.b)
    mu, S = np.asarray(tgt.means), np.asarray(tgt.covs)
    for i in range(2):
        means = [A[g] @ mu[i, g] + b[g] for g in range(2)]
        covs = [A[g] @ S[i, g] @ A[g].T for g in range(2)]
        np.testing.assert_allclose(means[0], means[1], atol=1e-7)
        np.testing.assert_allclose(covs[0], covs[1], atol=1e-7)
        np.testing.assert_allclose(means[0], np.asarray(fs.solution.template.means[i]), atol=1e-7)
    np.testing.assert_allclose(np.asarray(fs.direction),
                               np.asarray(fs.solution.template.means[1] - fs.solution.template.means[0]), atol=1e-12)


def test_affine_form_stats_input_and_precomputed_solution():
    H, y, a = _data(seed=1, n=2000)
    fs = sv.fair_steering(H, y, a, form="affine")
    per_group = _direction_in_every_group(fs)
    np.testing.assert_allclose(per_group[0], per_group[1], atol=1e-6)
    np.testing.assert_allclose(np.asarray(fs.direction), per_group[0], atol=1e-6)
    stats = js.estimate.from_data(jnp.asarray(H), y, a, 2, 2)
    fs2 = sv.fair_steering(stats, form="affine")
    np.testing.assert_allclose(np.asarray(fs2.map.A), np.asarray(fs.map.A), atol=1e-6)
    np.testing.assert_allclose(np.asarray(fs2.direction), np.asarray(fs.direction), atol=1e-6)
    fs3 = sv.fair_steering(fs.family, solution=fs.solution, toward=0)  # no new solve
    np.testing.assert_allclose(np.asarray(fs3.direction), -np.asarray(fs.direction), atol=1e-12)


def test_reference_coordinates(fitted):
    """coordinates="reference": the template composed with group r's template-to-group map of θ̃."""
    H, _, a, tmpl = fitted
    r = 1 - tmpl.solution.reference  # the moving group: its map is not the identity, so this tests something
    fs = sv.fair_steering(tmpl.family, solution=tmpl.solution, coordinates="reference", reference=r)
    A_r, b_r = np.asarray(tmpl.solution.maps.A[r]), np.asarray(tmpl.solution.maps.b[r])
    assert np.abs(A_r - np.eye(3)).max() > 1e-2
    np.testing.assert_allclose(np.asarray(fs.map.A[r]), np.eye(3), atol=1e-8)  # group r is not moved
    np.testing.assert_allclose(np.asarray(fs.map.b[r]), np.zeros(3), atol=1e-8)
    np.testing.assert_allclose(np.asarray(fs.direction), A_r @ np.asarray(tmpl.direction), atol=1e-10)
    tgt = np.asarray(tmpl.solution.target.means)
    np.testing.assert_allclose(np.asarray(fs.direction), tgt[1, r] - tgt[0, r], atol=1e-8)
    X = H[:7]
    for g in (0, 1):
        via_template = np.asarray(tmpl.map.apply(X, np.full(7, g))) @ A_r.T + b_r
        np.testing.assert_allclose(np.asarray(fs.map.apply(X, np.full(7, g))), via_template, atol=1e-8)


def test_three_classes_direction():
    H, y, a = _data(seed=2, n=3000, k=3)
    fs = sv.fair_steering(H, y, a, form="symmetric", toward=2)
    # away=None: minus the base-rate-weighted mean of the other classes
    nu, pi = np.asarray(fs.solution.template.means), np.asarray(fs.solution.template.base_rates)
    expect = nu[2] - (pi[0] * nu[0] + pi[1] * nu[1]) / (pi[0] + pi[1])
    np.testing.assert_allclose(np.asarray(fs.direction), expect, atol=1e-10)
    per_group = _direction_in_every_group(fs, toward=2, away=1)
    np.testing.assert_allclose(per_group[0], per_group[1], atol=1e-7)
    np.testing.assert_allclose(np.asarray(sv.fair_steering(fs.family, solution=fs.solution, toward=2,
                                                           away=1).direction), per_group[0], atol=1e-7)


def _manual(A, b, v, h, g, alpha):
    return np.einsum("nij,nj->ni", A[g], h) + b[g] + alpha * v


def test_module_last_all_index_and_context(fitted):
    _, _, _, fs = fitted
    A, b, v = (np.asarray(x) for x in (fs.map.A, fs.map.b, fs.direction))
    rng = np.random.default_rng(3)
    h = rng.normal(size=(4, 6, 3))
    g = np.array([0, 1, 1, 0])
    last = sv.FairSteer.from_steering(fs, alpha=1.5)
    out = np.asarray(last(jnp.asarray(h), jnp.asarray(g)))
    np.testing.assert_allclose(out[:, :-1], h[:, :-1], atol=0)  # other positions untouched
    np.testing.assert_allclose(out[:, -1], _manual(A, b, v, h[:, -1], g, 1.5), atol=1e-10)
    idx = np.array([0, 5, 2, 3])
    out = np.asarray(last(jnp.asarray(h), jnp.asarray(g), alpha=jnp.array([0.0, 1.0, 2.0, 3.0]), index=idx))
    for r in range(4):
        keep = np.arange(6) != idx[r]
        np.testing.assert_allclose(out[r, keep], h[r, keep], atol=0)
        np.testing.assert_allclose(out[r, idx[r]], _manual(A, b, v, h[r, idx[r]][None], g[r:r + 1], float(r))[0],
                                   atol=1e-10)
    every = sv.FairSteer.from_steering(fs, alpha=-0.5, position="all")
    out = np.asarray(every(jnp.asarray(h), jnp.asarray(g)))  # per-sequence ids broadcast over positions
    expect = _manual(A, b, v, h.reshape(-1, 3), np.repeat(g, 6), -0.5).reshape(h.shape)
    np.testing.assert_allclose(out, expect, atol=1e-10)
    with jsn.groups(jnp.asarray(g)):  # the jaxsteer.nn.groups context, as for Steer
        np.testing.assert_allclose(np.asarray(every(jnp.asarray(h))), expect, atol=1e-10)
    with pytest.raises(ValueError, match="index"):
        every(jnp.asarray(h), jnp.asarray(g), index=idx)
    with pytest.raises(ValueError, match="position"):
        sv.FairSteer.from_steering(fs, position="first")


def test_module_jit_equals_eager_alpha_traced_and_insert(fitted):
    _, _, _, fs = fitted
    rng = np.random.default_rng(4)
    h = jnp.asarray(rng.normal(size=(5, 4, 3)))
    g = jnp.array([1, 0, 0, 1, 1])
    steer = sv.FairSteer.from_steering(fs)
    traces = []

    @nnx.jit
    def run(model, h, g, alpha):
        traces.append(1)
        with jsn.groups(g):
            return model(h, alpha=alpha)

    for alpha in (0.0, 1.0, 2.5):
        np.testing.assert_allclose(np.asarray(run(steer, h, g, jnp.asarray(alpha))),
                                   np.asarray(steer(h, g, alpha=alpha)), atol=1e-12)
    assert len(traces) == 1  # α is traced: one compilation for the whole sweep

    class Net(nnx.Module):
        def __init__(self):
            self.inner = nnx.Linear(3, 3, rngs=nnx.Rngs(0))

        def __call__(self, x):
            return self.inner(x) * 2.0

    net = Net()
    plain = np.asarray(net(h))
    jsn.insert(net, "inner", sv.FairSteer.from_steering(fs, alpha=1.0))
    with jsn.groups(g):
        steered = np.asarray(net(h))
    inner = np.asarray(jsn.remove(net, "inner")(net.inner(h), g)) * 2.0
    np.testing.assert_allclose(steered, inner, atol=1e-12)
    assert np.abs(steered[:, -1] - plain[:, -1]).max() > 1e-3
    np.testing.assert_allclose(steered[:, :-1], plain[:, :-1], atol=1e-12)
    # frozen: no nnx.Param in the module
    assert not jax.tree_util.tree_leaves(nnx.state(steer, nnx.Param))


def test_x64_off_float32():
    H, y, a = _data(seed=5, n=1500)
    with jax.enable_x64(False):
        fs = sv.fair_steering(H, y, a, form="symmetric")
        assert fs.map.A.dtype == jnp.float64  # estimated and solved in float64, as the estimators
        steer = sv.FairSteer.from_steering(fs, alpha=1.0, position="all")
        h = jnp.asarray(H[:10], jnp.float32)
        out = steer(h, jnp.asarray(a[:10]))
        assert out.dtype == jnp.float32 and steer.A[...].dtype == jnp.float32
        jitted = jax.jit(lambda h, g, al: steer(h, g, alpha=al))(h, jnp.asarray(a[:10]), 1.0)
    expect = _manual(np.asarray(fs.map.A), np.asarray(fs.map.b), np.asarray(fs.direction), H[:10], a[:10], 1.0)
    np.testing.assert_allclose(np.asarray(out), expect, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(out), rtol=1e-6, atol=1e-6)
    with jax.enable_x64(True):
        fs64 = sv.fair_steering(H, y, a, form="symmetric")
    np.testing.assert_allclose(np.asarray(fs64.direction), np.asarray(fs.direction), atol=1e-12)


def test_errors(fitted):
    H, y, a, fs = fitted
    with pytest.raises(ValueError, match="toward"):
        sv.fair_steering(fs.family, solution=fs.solution, toward=2)
    with pytest.raises(ValueError, match="away"):
        sv.fair_steering(fs.family, solution=fs.solution, toward=1, away=1)
    with pytest.raises(ValueError, match="coordinates"):
        sv.fair_steering(H, y, a, coordinates="group")
    with pytest.raises(ValueError, match="y, a"):
        sv.fair_steering(H)
    with pytest.raises(ValueError, match="alpha"):
        sv.FairSteer.from_steering(fs)(jnp.ones((2, 3, 3)), jnp.array([0, 1]), alpha=jnp.ones(3))


def test_import_jaxsteer_stays_free_of_flax():
    import subprocess
    import sys

    code = ("import sys, jaxsteer; assert 'flax' not in sys.modules; jaxsteer.fair_steering; "
            "from jaxsteer.steering_vectors import FairSteer; assert 'flax' in sys.modules; "
            "assert issubclass(FairSteer, jaxsteer.nn.Steer)")
    subprocess.run([sys.executable, "-c", code], check=True)
