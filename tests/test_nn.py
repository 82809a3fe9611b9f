"""jaxsteer.nn: the Steer module under NNX transforms, optimizers, surgery, Linen and the bridge."""

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxsteer as js
from jaxsteer import nn as jsn
from jaxsteer.datasets import make_gaussian_family

D, M = 4, 2


def _random_steer(seed=0, d=D, m=M, trainable=False):
    rng = np.random.default_rng(seed)
    A = np.eye(d) + 0.3 * rng.normal(size=(m, d, d))
    b = rng.normal(size=(m, d))
    return jsn.Steer(d, m, A=A, b=b, trainable=trainable)


def _data(seed=0, n=12, d=D, m=M):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=(n, d))), jnp.asarray(np.arange(n) % m)


class MLP(nnx.Module):
    def __init__(self, rngs, din=3, d=D, dout=2):
        self.hidden = nnx.Linear(din, d, rngs=rngs)
        self.encoder = nnx.Dict(layers=nnx.List([nnx.Linear(d, d, rngs=rngs), nnx.Linear(d, d, rngs=rngs)]))
        self.head = nnx.Sequential(nnx.Linear(d, d, rngs=rngs), jax.nn.tanh, nnx.Linear(d, dout, rngs=rngs))

    def __call__(self, x):
        h = jax.nn.relu(self.hidden(x))
        for layer in self.encoder.layers:
            h = jnp.tanh(layer(h))
        return self.head(h)


# -- the module ---------------------------------------------------------------------------------------


def test_steer_matches_affine_map_and_broadcasts():
    steer = _random_steer()
    x, a = _data()
    f = steer.to_map()
    np.testing.assert_allclose(steer(x, a), f.apply(x, a), rtol=1e-13)
    # per-example ids [B] serve every token of [B, T, d]
    h = jnp.stack([x, 2 * x], axis=1)  # [n, 2, d]
    out = steer(h, a)
    np.testing.assert_allclose(out[:, 1], f.apply(2 * x, a), rtol=1e-13)
    np.testing.assert_allclose(jsn.Steer.identity(D, M)(x, a), x)
    # many groups: the gathered path equals the dense one
    m = 11
    big = _random_steer(1, m=m)
    g = jnp.asarray(np.arange(x.shape[0]) % m)
    np.testing.assert_allclose(big(x, g), big.to_map().apply(x, g), rtol=1e-13)


def test_steer_lognormal_and_dtype():
    rng = np.random.default_rng(2)
    A = np.eye(D) + 0.1 * rng.normal(size=(M, D, D))
    f = js.AffineMap(jnp.asarray(A), jnp.zeros((M, D)), lognormal=True)
    steer = jsn.Steer.from_maps(f)
    x = jnp.exp(jnp.asarray(rng.normal(size=(6, D))))
    a = jnp.asarray([0, 1, 0, 1, 1, 0])
    np.testing.assert_allclose(steer(x, a), f.apply(x, a), rtol=1e-12)
    out32 = _random_steer()(x.astype(jnp.float32), a)
    assert out32.dtype == jnp.float32


def test_steer_errors():
    steer = _random_steer()
    x, a = _data()
    with pytest.raises(ValueError, match="h: expected"):
        steer(x[:, :2], a)
    with pytest.raises(ValueError, match="out of range"):
        steer(x, a + 1)
    with pytest.raises(ValueError, match=r"^a: group codes must be integers; entry \d+ is 0.5"):
        steer(x, a.astype(float) + 0.5)
    np.testing.assert_array_equal(steer(x, a.astype(float)), steer(x, a))  # whole-number floats are codes
    with pytest.raises(ValueError, match=r"^a: group codes must be integers, got dtype float"):
        jax.jit(steer)(x, a.astype(float))  # traced floats cannot be checked
    with pytest.raises(ValueError, match="leading axes"):
        steer(x, a[:3])
    with pytest.raises(ValueError, match="without group ids"):
        steer(x)
    with pytest.raises(ValueError, match="shape"):
        jsn.Steer(D, M, A=np.eye(D))
    with pytest.raises(TypeError, match="not affine|AffineMap"):
        jsn.Steer.from_maps("nope")


def test_from_solution_and_steerer():
    # d = 1: the solver's closed form compiles fastest; the maps are still per-group affine maps
    fam = make_gaussian_family(jax.random.PRNGKey(0), 2, 2, 1)
    x, y, a = fam.sample(jax.random.PRNGKey(1), 400)
    st = js.Steerer(map="moment", form="symmetric").fit(np.asarray(x), np.asarray(y), np.asarray(a))
    steer = jsn.Steer.from_steerer(st)
    assert not steer.trainable
    np.testing.assert_allclose(steer(x, a), st.transform(x, a), rtol=1e-12)
    fit, sol = st.family_, st.solution_
    align = jsn.Steer.from_solution(sol)
    np.testing.assert_allclose(align(x, a), js.maps.align_maps(sol).apply(x, a), rtol=1e-12)
    moment = jsn.Steer.from_solution(sol, fit, map="moment", trainable=True)
    assert moment.trainable
    np.testing.assert_allclose(moment(x, a), js.maps.moment_maps(fit, sol).apply(x, a), rtol=1e-12)
    with pytest.raises(ValueError, match="family"):
        jsn.Steer.from_solution(sol, map="moment")
    with pytest.raises(ValueError, match="posterior"):
        jsn.Steer.from_solution(sol, fit, map="posterior")
    st.group_map_ = js.maps.posterior_map(fit, sol)
    with pytest.raises(TypeError, match="not affine"):
        jsn.Steer.from_steerer(st)


# -- transforms, optimizers -----------------------------------------------------------------------------


def test_jit_equals_eager_and_split_merge():
    steer = _random_steer()
    x, a = _data()
    eager = steer(x, a)
    np.testing.assert_allclose(nnx.jit(lambda s, x, a: s(x, a))(steer, x, a), eager, rtol=1e-14)
    np.testing.assert_allclose(jax.jit(lambda s, x, a: s(x, a))(steer, x, a), eager, rtol=1e-14)
    graphdef, state = nnx.split(steer)

    @jax.jit
    def f(state, x, a):
        with jsn.groups(a):
            return nnx.merge(graphdef, state)(x)

    np.testing.assert_allclose(f(state, x, a), eager, rtol=1e-14)


def test_frozen_never_changes_and_trainable_trains():
    model = MLP(nnx.Rngs(0))
    frozen = _random_steer(3)
    jsn.insert(model, "hidden", frozen)
    trainable = jsn.insert(model, "encoder.layers.1", _random_steer(4, trainable=True)).steer
    A0, b0 = np.asarray(frozen.A[...]), np.asarray(frozen.b[...])
    T0 = np.asarray(trainable.A[...])
    opt = nnx.Optimizer(model, optax.adam(0.1), wrt=nnx.Param)
    x, a = _data(n=12)
    x = x[:, :3]

    @nnx.jit
    def step(model, opt, x, a):
        def loss_fn(model):
            with jsn.groups(a):
                return jnp.mean(model(x) ** 2)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        assert not any(isinstance(v, jsn.SteerState) for v in jax.tree.leaves(
            grads, is_leaf=lambda v: isinstance(v, nnx.Variable)))
        opt.update(model, grads)
        return loss

    for _ in range(3):
        step(model, opt, x, a)
    np.testing.assert_array_equal(frozen.A[...], A0)
    np.testing.assert_array_equal(frozen.b[...], b0)
    assert np.abs(np.asarray(trainable.A[...]) - T0).max() > 1e-3


def test_steered_model_gradient_matches_finite_differences():
    model = MLP(nnx.Rngs(1))
    jsn.insert(model, "encoder.layers.0", _random_steer(5, trainable=True))
    x, a = _data(3, n=10)
    x = x[:, :3]
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(params):
        m = nnx.merge(graphdef, params, rest)
        with jsn.groups(a):
            return jnp.sum(jnp.sin(m(x)))

    g = jax.jit(jax.grad(loss))(params)
    loss = jax.jit(loss)
    rng = np.random.default_rng(0)
    leaves, treedef = jax.tree.flatten(params)
    dirs = jax.tree.unflatten(treedef, [jnp.asarray(rng.normal(size=v.shape)) for v in leaves])
    eps = 1e-6
    plus = jax.tree.map(lambda p, v: p + eps * v, params, dirs)
    minus = jax.tree.map(lambda p, v: p - eps * v, params, dirs)
    fd = (loss(plus) - loss(minus)) / (2 * eps)
    an = sum(jnp.vdot(u, v) for u, v in zip(jax.tree.leaves(g), jax.tree.leaves(dirs)))
    np.testing.assert_allclose(an, fd, rtol=1e-7)
    # the steer's own parameters are among those differentiated
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(g)[0]]
    assert any("steer" in p for p in paths)


def test_no_recompilation_between_steps():
    model = MLP(nnx.Rngs(2))
    jsn.insert(model, "hidden", _random_steer(6, trainable=True))
    opt = nnx.Optimizer(model, optax.sgd(1e-2), wrt=nnx.Param)
    traces = []

    @nnx.jit
    def step(model, opt, x, a):
        traces.append(1)

        def loss_fn(model):
            with jsn.groups(a):
                return jnp.mean(model(x) ** 2)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    for seed in range(4):
        x, a = _data(seed, n=8)
        step(model, opt, x[:, :3], jnp.asarray(np.random.default_rng(seed).integers(0, 2, 8)))
    assert len(traces) == 1


def test_groups_context_is_trace_safe():
    steer = _random_steer()
    x, a = _data()
    with jsn.groups(a):
        eager = steer(x)
        with pytest.raises(ValueError, match="baked into the compiled code"):
            jax.jit(lambda s, x: s(x))(steer, x)
        # eager transforms that do not compile are fine
        np.testing.assert_allclose(jax.grad(lambda x: steer(x).sum())(x).shape, x.shape)
        with jsn.groups(1 - a):  # nesting: the innermost wins
            np.testing.assert_allclose(steer(x), steer(x, 1 - a))
        assert jsn.current_groups() is not None
    assert jsn.current_groups() is None
    np.testing.assert_allclose(eager, steer(x, a))
    # a constant created inside the compiled function is legitimate
    out = jax.jit(lambda s, x: _call_with(s, x, jnp.asarray(np.arange(12) % 2)))(steer, x)
    np.testing.assert_allclose(out, eager, rtol=1e-14)


def _call_with(steer, x, a):
    with jsn.groups(a):
        return steer(x)


# -- surgery -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["hidden", "encoder.layers.1", "head.layers.2", ("encoder", "layers", 0)])
def test_insert_remove_restores_exactly(where):
    model = MLP(nnx.Rngs(3))
    x, a = _data(4, n=9)
    x = x[:, :3]
    before = model(x)
    graphdef0, state0 = nnx.split(model)
    d = 2 if where == "head.layers.2" else D
    steer = _random_steer(7, d=d)
    wrapper = jsn.insert(model, where, steer)
    assert isinstance(wrapper, jsn.Steered) and wrapper.steer is steer
    with jsn.groups(a):
        steered = model(x)
    assert np.abs(np.asarray(steered - before)).max() > 1e-3
    with pytest.raises(ValueError, match="already steered"):
        jsn.insert(model, where, steer)
    assert jsn.remove(model, where) is steer
    np.testing.assert_array_equal(model(x), before)
    graphdef1, state1 = nnx.split(model)
    assert graphdef1 == graphdef0
    jax.tree.map(np.testing.assert_array_equal, state1, state0)
    with pytest.raises(ValueError, match="not steered"):
        jsn.remove(model, where)


def test_insert_steers_at_the_right_place_and_forwards_attributes():
    model = MLP(nnx.Rngs(4))
    x, a = _data(5, n=8)
    x = x[:, :3]
    steer = _random_steer(8)
    wrapper = jsn.insert(model, "hidden", steer)
    assert wrapper.in_features == 3  # forwarded to the wrapped Linear
    with jsn.groups(a):
        got = model(x)
    jsn.remove(model, "hidden")
    h = jax.nn.relu(steer(model.hidden(x), a))
    for layer in model.encoder.layers:
        h = jnp.tanh(layer(h))
    np.testing.assert_allclose(got, model.head(h), rtol=1e-13)
    with pytest.raises(ValueError, match="does not name"):
        jsn.insert(model, "encoder.nope", steer)
    with pytest.raises(ValueError, match="attribute path"):
        jsn.insert(model, "", steer)


# -- Linen and the bridge ---------------------------------------------------------------------------------


class LinenMLP(linen.Module):
    @linen.compact
    def __call__(self, x):
        h = linen.relu(linen.Dense(D)(x))
        h = linen.Dense(D, name="inner")(h)
        return linen.Dense(2)(jnp.tanh(h))


def test_linen_steering_after_named_submodule():
    x, a = _data(6, n=10)
    x = x[:, :3]
    model = LinenMLP()
    variables = model.init(jax.random.PRNGKey(0), x)
    steer = _random_steer(9)
    with jsn.linen_steering("inner", steer, a=a):
        got = model.apply(variables, x)
    # by hand: intercept to read the inner output, steer it, continue
    p = variables["params"]
    h = linen.relu(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
    h = h @ p["inner"]["kernel"] + p["inner"]["bias"]
    want = jnp.tanh(steer(h, a)) @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_array_equal(model.apply(variables, x), LinenMLP().apply(variables, x))  # hook gone

    @jax.jit
    def jitted(variables, x, a):
        with jsn.groups(a), jsn.linen_steering("inner", steer.to_map()):
            return model.apply(variables, x)

    np.testing.assert_allclose(jitted(variables, x, a), got, rtol=1e-12)


def test_bridge_interop():
    x, a = _data(7, n=10)
    x = x[:, :3]
    # a Linen submodule inside an NNX model, steered by surgery
    class Host(nnx.Module):
        def __init__(self, rngs):
            self.body = nnx.bridge.ToNNX(linen.Dense(D), rngs=rngs)
            self.out = nnx.Linear(D, 2, rngs=rngs)

        def __call__(self, x):
            return self.out(jnp.tanh(self.body(x)))

    host = Host(nnx.Rngs(0))
    nnx.bridge.lazy_init(host.body, x)
    before = host(x)
    steer = _random_steer(10)
    jsn.insert(host, "body", steer)
    with jsn.groups(a):
        got = host(x)
    jsn.remove(host, "body")
    np.testing.assert_allclose(got, host.out(jnp.tanh(steer(host.body(x), a))), rtol=1e-13)
    np.testing.assert_array_equal(host(x), before)

    # a Steer as a Linen submodule (explicit group ids)
    class LinenHost(linen.Module):
        trainable: bool

        @linen.compact
        def __call__(self, x, a):
            h = linen.Dense(D)(x)
            h = nnx.bridge.ToLinen(jsn.Steer, args=(D, M), kwargs={"trainable": self.trainable})(h, a)
            return linen.Dense(2)(h)

    frozen = LinenHost(trainable=False)
    variables = frozen.init(jax.random.PRNGKey(1), x, a)
    assert "steer_state" in variables and "A" in variables["steer_state"]["ToLinen_0"]
    np.testing.assert_allclose(frozen.apply(variables, x, a).shape, (10, 2))
    trainable = LinenHost(trainable=True)
    v2 = trainable.init(jax.random.PRNGKey(1), x, a)
    assert "A" in v2["params"]["ToLinen_0"]
