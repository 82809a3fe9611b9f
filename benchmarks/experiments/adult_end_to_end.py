"""End-to-end steering of a Flax NNX model on Adult (sex): frozen Steer, ideal_gap regulariser, fine-tuned Steer.

    python -m benchmarks.experiments.adult_end_to_end [--seeds 5] [--quick] [--out benchmarks/results]
        [--weights none,ideal] [--form affine] [--epochs 20] [--batch 2048] [--lambdas 0.1,0.3,1,3]

The model is an MLP (``85 → 64 → 32 → 2``, GELU after each hidden layer) on the one-hot/standardised
Adult features (the group ``sex`` is *not* a feature; group 0 = Female, 1 = Male). Its penultimate
features are the output of the submodule ``hidden2`` (``[n, 32]``). Per seed:

(i) **plain** — cross-entropy, Adam, minibatches of 2048, ``--epochs`` epochs.
(ii) **frozen Steer + head** — a :class:`jaxsteer.Steerer` (``intervention="affirmative"``, reference =
    the most frequent group, Male; ``--form``, default ``affine``) is fitted on (i)'s *training*
    penultimate features with ``y`` and ``a``; its label-free group map (``align`` or ``moment``)
    becomes a frozen :class:`jaxsteer.nn.Steer` that :func:`jaxsteer.nn.insert` puts after ``hidden2``;
    then only the head is trained (``nnx.Optimizer(..., wrt=nnx.All(nnx.Param,
    nnx.PathContains("head")))``, starting from (i)'s head). The group ids reach the Steer through
    ``jaxsteer.nn.groups(a)`` at train *and* test time (the deployed model is given ``a``).
(iii) **ideal_gap regulariser** — from (i)'s initialisation and batch order,
    ``CE + λ · ideal_gap(h_batch, y, a)`` on the penultimate features of every minibatch
    (``affirmative``, ``symmetric`` form: convex, so warm starts are exact and cheap; reference Male;
    warm-started from the previous step's solution with 2 Newton steps per step; the first step's
    solution is a cold solve); a sweep of λ.
(iv) **fine-tuned Steer** — (i) with a *trainable* Steer initialised from the Steerer's solution (as in
    (ii)); every parameter fine-tuned with ``CE + 1 · ideal_gap`` on the *steered* features.
(v) **(iii) then (ii)** — each regularised model of (iii) gets its own frozen ``align`` Steer (fitted on
    its training features) and a retrained head.

Why (v): a group-aware Bayes rule, and ``ideal_gap`` in the ``affine`` form, are unchanged by any
per-group invertible affine map of the features (KL is invariant under a common invertible map of both
arguments), so a Steer can only change what the *group-blind* head sees, and a small gap only says
that the groups' class-conditional laws are affine images of each other; the ``align`` map undoes
those images (it takes every group into the reference group's coordinates, where the ideal family's
class-conditional laws coincide).

**Class-balance weights** (``--weights``, both by default, each its own table): the ideal family also
has its own class balance (``affirmative``: every group gets the reference group's base rate), and the
library's protocol trains on steered data *with* the weights ``q̃/q`` (``Steerer.sample_weight``). With
``ideal``, the cross-entropy of (ii)-(v) is weighted by them, and the row "(i) plain, class-balance
weights" (reweighing alone, λ = 0 of (iii)) is added; with ``none`` every loss is unweighted and (i)
is λ = 0 of (iii). (i) itself is always unweighted and is the base of the paired differences.

Metrics on the official test split (15,060 rows): accuracy, ΔDP (demographic-parity difference),
ΔEO (equal-opportunity difference: the gap in true-positive rate of class 1), as fairlearn defines
them (:mod:`jaxsteer.metrics`), and the test gap (``ideal_gap``, symmetric form, of the full test
split's features as the head sees them — steered for (ii), (iv), (v) — cold solve, in nats). Mean ± sd
over ``--seeds`` seeds (initialisation and batch order; the data split is fixed).

The networks train in float32 (every training array, parameter and minibatch ``ideal_gap`` is float32;
the script switches x64 on only so that the Steerer fits and the test gaps are computed in float64:
trained penultimate features are too ill-conditioned for a float32 Gaussian model). A step whose loss
or gradient is not finite is skipped (``optax.apply_if_finite``) and counted. Outputs in ``--out``:
``adult_end_to_end.md`` (tables), ``adult_end_to_end.json`` (every number, per seed) and
``adult_end_to_end.png`` (accuracy against ΔEO and ΔDP: the λ sweeps as curves, the other methods as
points). ``--quick`` (one seed, a random 4000/3000-row subset, a few steps) checks the pipeline in
under a minute; without an explicit ``--out`` it writes to a temporary folder so as not to overwrite
the real results.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import jax

jax.config.update("jax_enable_x64", True)  # float64 for the Steerer fits and test gaps; training casts to float32

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from benchmarks.experiments._common import environment, mean_sd, pm, publish  # noqa: E402
import jaxsteer as js  # noqa: E402
from jaxsteer import losses, metrics  # noqa: E402
from jaxsteer import nn as jsn  # noqa: E402
from jaxsteer.datasets import load_adult  # noqa: E402

F32 = jnp.float32
STEM = "adult_end_to_end"
REFERENCE = 1  # Male, the most frequent group: what Steerer(reference=None) picks, kept by `affirmative`
HEAD = nnx.All(nnx.Param, nnx.PathContains("head"))  # the head's parameters only
GAP_KW = dict(num_classes=2, num_groups=2, intervention="affirmative", form="symmetric", reference=REFERENCE)


# -- the model -----------------------------------------------------------------------------------------


class Block(nnx.Module):
    """``gelu(W x + b)``: one hidden layer, a single submodule so that a Steer can follow it."""

    def __init__(self, din: int, dout: int, rngs: nnx.Rngs):
        self.linear = nnx.Linear(din, dout, rngs=rngs)

    def __call__(self, x):
        return jax.nn.gelu(self.linear(x))


class MLP(nnx.Module):
    """``din → hidden → d → 2``; ``features`` is the penultimate representation (``hidden2``'s output)."""

    def __init__(self, din: int, hidden: int, d: int, rngs: nnx.Rngs):
        self.hidden1 = Block(din, hidden, rngs)
        self.hidden2 = Block(hidden, d, rngs)
        self.head = nnx.Linear(d, 2, rngs=rngs)

    def features(self, x):
        return self.hidden2(self.hidden1(x))  # steered once a Steer is inserted at "hidden2"

    def __call__(self, x):
        return self.head(self.features(x))


# -- compiled steps --------------------------------------------------------------------------------------


def _keep_finite(new: js.Solution, old: js.Solution) -> js.Solution:
    """The new warm-start solution unless its solve broke down (non-finite), else the previous one."""
    ok = jnp.all(jnp.isfinite(new.maps.A)) & jnp.all(jnp.isfinite(new.maps.b)) & jnp.isfinite(new.kl)
    return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)


TRACES = {"count": 0}  # traces of the training steps (each is a compilation)


def _make_step(wrt, gap_iters: int):
    """One Adam step on ``CE + lam · ideal_gap`` (``warm=None``: CE only), differentiating ``wrt``."""

    @nnx.jit
    def step(model, opt, x, y, a, w, warm, lam):
        TRACES["count"] += 1

        def loss_fn(model):
            with jsn.groups(a):  # the ids every inserted Steer uses (entered inside the jitted step)
                h = model.features(x)
                logits = model.head(h)
            ce = jnp.mean(w * optax.softmax_cross_entropy_with_integer_labels(logits, y))  # w: class-balance weights
            if warm is None:
                return ce, (ce, jnp.zeros((), ce.dtype), None)
            gap, sol = losses.ideal_gap(h, y, a, **GAP_KW, warm_start=warm, return_solution=True,
                                        max_iter=gap_iters)
            return ce + lam * gap, (ce, gap, sol)

        (_, (ce, gap, sol)), grads = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, wrt), has_aux=True)(model)
        opt.update(model, grads)
        if warm is not None:
            sol = _keep_finite(sol, warm)
        return ce, gap, sol

    return step


@nnx.jit
def _forward(model, x, a):
    with jsn.groups(a):
        h = model.features(x)
        return model.head(h), h


def _cold_gap(h, y, a, dtype=F32):
    """Cold ``ideal_gap`` (value, solution) of features ``h``: a float32 warm start, or the float64 test gap."""
    return losses.ideal_gap(jnp.asarray(h, dtype), jnp.asarray(y, jnp.int32), jnp.asarray(a, jnp.int32), **GAP_KW,
                            return_solution=True)


# -- training and evaluation -----------------------------------------------------------------------------


def ideal_weights(y, a) -> np.ndarray:
    """``[k, m]`` weights ``q̃/q`` that give the training rows the class balance of the ideal family.

    ``affirmative`` keeps the reference group and gives every group its class balance:
    ``q̃[i, a] = q[i, r] / p[r] · p[a]`` (what ``Steerer(...).sample_weight(y, a)`` returns; it does not
    depend on the features). Normalised to mean 1 over the training rows.
    """
    y, a = np.asarray(y), np.asarray(a)
    q = np.bincount(2 * y + a, minlength=4).reshape(2, 2) / len(y)
    p = q.sum(axis=0)
    qt = q[:, [REFERENCE]] / p[REFERENCE] * p[None, :]
    w = qt / q
    return w / np.mean(w[y, a])


class Trainer:
    """Minibatch loops over one fixed training split (float32 device arrays), timing every step."""

    def __init__(self, X, y, a, cfg):
        self.X, self.y, self.a = jnp.asarray(X, F32), jnp.asarray(y, jnp.int32), jnp.asarray(a, jnp.int32)
        self.table = ideal_weights(y, a)
        self.w = jnp.asarray(self.table[np.asarray(y), np.asarray(a)], F32)
        self.ones = jnp.ones((min(cfg["batch"], len(y)),), F32)
        self.n = self.X.shape[0]
        self.cfg = cfg
        self.bs = min(cfg["batch"], self.n)
        self.steps = {}
        self.txs = {}
        self.times = {"plain": [], "gap": []}
        self.compiles = []  # (kind, seconds of the call that traced and compiled)
        self.skipped = 0

    def _step(self, wrt_name):
        if wrt_name not in self.steps:
            wrt = nnx.Param if wrt_name == "all" else HEAD
            self.steps[wrt_name] = _make_step(wrt, self.cfg["gap_iters"])
        return self.steps[wrt_name]

    def _tx(self, lr):
        # One optax object per learning rate: the optimizer's `tx` is part of the graph definition that
        # nnx.jit caches on, so a fresh (unequal) optax.adam(lr) per model would recompile every step.
        if lr not in self.txs:
            self.txs[lr] = optax.apply_if_finite(optax.adam(lr), max_consecutive_errors=10)  # skip non-finite steps
        return self.txs[lr]

    def batches(self, rng):
        perm = rng.permutation(self.n)
        for i in range(self.n // self.bs):  # full batches only: one compiled shape
            idx = jnp.asarray(perm[i * self.bs:(i + 1) * self.bs])
            yield self.X[idx], self.y[idx], self.a[idx], self.w[idx]

    def train(self, model, *, epochs, lr, rng, lam=0.0, wrt="all", weighted=False):
        """Train ``model`` in place; ``lam > 0`` adds the warm-started ideal_gap of each batch's features.

        Returns the per-epoch mean cross-entropy and ideal gap of the minibatches.
        """
        opt = nnx.Optimizer(model, self._tx(lr), wrt=nnx.Param if wrt == "all" else HEAD)
        step = self._step(wrt)
        lam_arr = jnp.asarray(lam, F32)
        warm = None
        history = []
        kind = "gap" if lam > 0 else "plain"
        for _ in range(epochs):
            ces, gaps = [], []
            for xb, yb, ab, wb in self.batches(rng):
                if not weighted:
                    wb = self.ones
                if lam > 0 and warm is None:
                    _, hb = _forward(model, xb, ab)
                    _, warm = _cold_gap(hb, yb, ab)
                t0, traces = time.perf_counter(), TRACES["count"]
                ce, gap, new = step(model, opt, xb, yb, ab, wb, warm, lam_arr)
                ce.block_until_ready()
                dt = time.perf_counter() - t0
                if TRACES["count"] > traces:
                    self.compiles.append((f"{kind}/{wrt}/{type(model.hidden2).__name__}", round(dt, 2)))
                else:
                    self.times[kind].append(dt)
                if lam > 0:
                    warm = new
                ce, gap = float(ce), float(gap)
                if not (np.isfinite(ce) and np.isfinite(gap)):
                    self.skipped += 1
                    continue
                ces.append(ce)
                gaps.append(gap)
            history.append({"ce": float(np.mean(ces)), "gap": float(np.mean(gaps)) if lam > 0 else None})
        return history


def evaluate(model, X, y, a, *, gap=True):
    """Test accuracy, ΔDP, ΔEO and (optionally) the ideal gap of the test features."""
    logits, h = _forward(model, jnp.asarray(X, F32), jnp.asarray(a, jnp.int32))
    pred = jnp.argmax(logits, axis=-1)
    out = {
        "accuracy": float(metrics.accuracy(y, pred)),
        "dp": float(metrics.demographic_parity_difference(pred, a, num_groups=2)),
        "eo": float(metrics.equal_opportunity_difference(y, pred, a, num_groups=2)),
    }
    if gap:
        value, _ = _cold_gap(h, y, a, jnp.float64)
        out["test_gap"] = float(value)
    return out


def fit_steerer(model, X, y, a, *, form, map):
    """A Steerer fitted (in float64) on the model's training penultimate features; warnings recorded."""
    _, h = _forward(model, jnp.asarray(X, F32), jnp.asarray(a, jnp.int32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        st = js.Steerer(intervention="affirmative", form=form, map=map).fit(np.asarray(h, np.float64), y, a)
    info = {
        "kl": float(st.solution_.kl),
        "converged": bool(np.all(np.asarray(st.solution_.converged))),
        "residual": float(np.max(np.asarray(st.solution_.residual))),
        "warnings": [str(w.message) for w in caught],
    }
    return st, info


# -- the experiment -------------------------------------------------------------------------------------


def _config(args) -> dict:
    if args.quick:
        cfg = dict(seeds=1, n_train=4000, n_test=3000, epochs=2, batch=1000, head_epochs=1, ft_epochs=1,
                   lambdas=[1.0])
    else:
        cfg = dict(seeds=5, n_train=None, n_test=None, epochs=20, batch=2048, head_epochs=10, ft_epochs=10,
                   lambdas=[0.1, 0.3, 1.0, 3.0])
    cfg.update(hidden=64, d=32, lr=3e-3, head_lr=3e-3, ft_lr=1e-3, ft_lambda=1.0, gap_iters=2,
               maps=["align", "moment"], combo_map="align", form=args.form)
    for key in ("seeds", "epochs", "batch"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    if args.lambdas is not None:
        cfg["lambdas"] = [float(v) for v in args.lambdas.split(",") if float(v) > 0]
    cfg["weightings"] = [w for w in ("none", "ideal") if w in args.weights.split(",")]
    return cfg


def _subset(X, y, a, n, seed):
    if n is None or n >= len(y):
        return X, y, a
    idx = np.sort(np.random.default_rng(seed).permutation(len(y))[:n])
    return X[idx], y[idx], a[idx]


PLAIN = "(i) plain"


def run(cfg: dict, log=print) -> dict:
    data = load_adult(group="sex")
    Xtr, ytr, atr = _subset(data.X_train, data.y_train, data.a_train, cfg["n_train"], 101)
    Xte, yte, ate = _subset(data.X_test, data.y_test, data.a_test, cfg["n_test"], 202)
    ytr, atr, yte, ate = (np.asarray(v, np.int32) for v in (ytr, atr, yte, ate))
    log(f"Adult (sex): train {Xtr.shape}, test {Xte.shape}; groups {data.group_names}, "
        f"positive rate train {ytr.mean():.3f}")
    trainer = Trainer(Xtr, ytr, atr, cfg)
    log(f"class-balance weights q̃/q [class, group]: {np.round(trainer.table, 3).tolist()}")
    din = Xtr.shape[1]
    tables = {w: {} for w in cfg["weightings"]}  # weighting -> method -> per-seed rows
    steerers: dict[str, list] = {}
    curves: dict[str, list] = {}

    def record(weighting, name, seed, res, t0):
        res = dict(res, seed=seed, seconds=round(time.perf_counter() - t0, 2))
        tables[weighting].setdefault(name, []).append(res)
        log(f"  seed {seed} [{weighting}] {name:<48} acc {res['accuracy']:.4f}  ΔDP {res['dp']:.4f}  "
            f"ΔEO {res['eo']:.4f}  gap {res['test_gap']:.4f}  ({res['seconds']:.1f} s)")

    def fresh(seed, init_state):
        model = MLP(din, cfg["hidden"], cfg["d"], nnx.Rngs(seed))
        nnx.update(model, init_state)
        return model

    for seed in range(cfg["seeds"]):
        # (i) plain, unweighted: shared by both tables
        t0 = time.perf_counter()
        plain = MLP(din, cfg["hidden"], cfg["d"], nnx.Rngs(seed))
        init_state = nnx.state(nnx.clone(plain))
        curves.setdefault("plain", []).append(
            trainer.train(plain, epochs=cfg["epochs"], lr=cfg["lr"], rng=np.random.default_rng(seed)))
        plain_res = evaluate(plain, Xte, yte, ate)
        for w in cfg["weightings"]:
            record(w, PLAIN, seed, plain_res, t0)
        steerer_of = {}
        for mp in cfg["maps"]:
            steerer_of[mp], info = fit_steerer(plain, Xtr, ytr, atr, form=cfg["form"], map=mp)
            steerers.setdefault(mp, []).append(info)

        for w in cfg["weightings"]:
            weighted = w == "ideal"
            if weighted:  # reweighing alone: λ = 0 of the weighted (iii)
                t0 = time.perf_counter()
                model = fresh(seed, init_state)
                trainer.train(model, epochs=cfg["epochs"], lr=cfg["lr"], rng=np.random.default_rng(seed),
                              weighted=True)
                record(w, "(i) plain, class-balance weights", seed, evaluate(model, Xte, yte, ate), t0)
            for mp, st in steerer_of.items():
                # (ii) frozen Steer after hidden2, head retrained
                t0 = time.perf_counter()
                model = nnx.clone(plain)
                jsn.insert(model, "hidden2", jsn.Steer.from_steerer(st, dtype=F32))
                trainer.train(model, epochs=cfg["head_epochs"], lr=cfg["head_lr"], wrt="head",
                              rng=np.random.default_rng(1000 + seed), weighted=weighted)
                record(w, f"(ii) frozen Steer ({mp}) + head", seed, evaluate(model, Xte, yte, ate), t0)
                # (iv) trainable Steer from the solution, all fine-tuned with ideal_gap on the steered features
                t0 = time.perf_counter()
                model = nnx.clone(plain)
                jsn.insert(model, "hidden2", jsn.Steer.from_steerer(st, trainable=True, dtype=F32))
                curves.setdefault(f"{w}/ft-{mp}", []).append(
                    trainer.train(model, epochs=cfg["ft_epochs"], lr=cfg["ft_lr"], lam=cfg["ft_lambda"],
                                  rng=np.random.default_rng(2000 + seed), weighted=weighted))
                record(w, f"(iv) fine-tuned Steer ({mp})", seed, evaluate(model, Xte, yte, ate), t0)
            for lam in cfg["lambdas"]:
                # (iii) ideal_gap regulariser, (i)'s initialisation and batch order
                t0 = time.perf_counter()
                model = fresh(seed, init_state)
                curves.setdefault(f"{w}/lam={lam:g}", []).append(
                    trainer.train(model, epochs=cfg["epochs"], lr=cfg["lr"], lam=lam,
                                  rng=np.random.default_rng(seed), weighted=weighted))
                record(w, f"(iii) ideal_gap λ={lam:g}", seed, evaluate(model, Xte, yte, ate), t0)
                # (v) = (iii) then (ii): the regularised features, aligned by a frozen Steer, head retrained
                mp = cfg["combo_map"]
                t0 = time.perf_counter()
                st, info = fit_steerer(model, Xtr, ytr, atr, form=cfg["form"], map=mp)
                steerers.setdefault(f"{w}/lam={lam:g}+{mp}", []).append(info)
                jsn.insert(model, "hidden2", jsn.Steer.from_steerer(st, dtype=F32))
                trainer.train(model, epochs=cfg["head_epochs"], lr=cfg["head_lr"], wrt="head",
                              rng=np.random.default_rng(1000 + seed), weighted=weighted)
                record(w, f"(v) ideal_gap λ={lam:g} + frozen Steer ({mp}) + head", seed,
                       evaluate(model, Xte, yte, ate), t0)

    def med(ts):  # calls that compiled are not in these lists
        return float(np.median(ts)) if ts else None

    return {
        "config": cfg,
        "data": {"train": list(Xtr.shape), "test": list(Xte.shape), "group_names": list(data.group_names)},
        "class_balance_weights": trainer.table.tolist(),
        "tables": {w: {"methods": t, "summary": dict(_ordered({n: _summary(r) for n, r in t.items()})),
                       "paired_vs_plain": dict(_ordered(_paired(t)))} for w, t in tables.items()},
        "steerers": steerers,
        "train_curves": curves,
        "step_seconds": {"plain": med(trainer.times["plain"]), "with_ideal_gap": med(trainer.times["gap"])},
        "skipped_steps": trainer.skipped,
        "step_compilations": trainer.compiles,
    }


KEYS = ("accuracy", "dp", "eo", "test_gap")


def _summary(rows):
    return {k: mean_sd([r[k] for r in rows]) for k in KEYS}


def _paired(methods):
    """Per-seed differences against (i) (same seed: same initialisation and batch order), mean ± sd."""
    base = {r["seed"]: r for r in methods[PLAIN]}
    return {name: {k: mean_sd([r[k] - base[r["seed"]][k] for r in rows]) for k in ("accuracy", "dp", "eo")}
            for name, rows in methods.items() if name != PLAIN}


def _ordered(table: dict):
    """Rows grouped by method, (i) to (v), in run order within a method."""
    rank = {"(i)": 0, "(ii)": 1, "(iii)": 2, "(iv)": 3, "(v)": 4}
    return sorted(table.items(), key=lambda kv: rank.get(kv[0].split(" ")[0], 9))


# -- outputs --------------------------------------------------------------------------------------------


def _pm(s, k, digits=4):
    return pm(s.get(k), digits)


TITLES = {
    "none": "Unweighted cross-entropy",
    "ideal": "Cross-entropy of (ii)-(v) weighted by the ideal family's class balance q̃/q",
}


def markdown(res) -> str:
    cfg = res["config"]
    n = cfg["seeds"]
    W = np.round(np.asarray(res["class_balance_weights"]), 3).tolist()
    lines = [
        "# End to end on Adult (sex): a Flax MLP with a Steer and the ideal_gap loss",
        "",
        "`python -m benchmarks.experiments.adult_end_to_end" + (" --quick" if res.get("quick") else "") + "` "
        f"({n} seed{'s' if n > 1 else ''}, mean ± sd; test split {res['data']['test'][0]} rows, train "
        f"{res['data']['train'][0]}). Model `{res['data']['train'][1]} → {cfg['hidden']} → {cfg['d']} → 2` (GELU), "
        f"float32, Adam, minibatches of {cfg['batch']}; group 0 = Female, 1 = Male (not a feature).",
        "",
        f"* (i) plain: {cfg['epochs']} epochs, lr {cfg['lr']:g}, unweighted (the same model in both tables).",
        f"* (ii) `Steerer(intervention='affirmative', form='{cfg['form']}', map=…)` fitted on (i)'s training "
        f"penultimate features; frozen `Steer` inserted after `hidden2` (`jaxsteer.nn.insert`); head only "
        f"retrained from (i)'s ({cfg['head_epochs']} epochs, lr {cfg['head_lr']:g}, "
        "`wrt=nnx.All(nnx.Param, nnx.PathContains('head'))`).",
        f"* (iii) from (i)'s initialisation, `CE + λ·ideal_gap` (affirmative, symmetric, warm-started, "
        f"{cfg['gap_iters']} Newton steps per minibatch) on the penultimate features, {cfg['epochs']} epochs.",
        f"* (iv) (i) + trainable `Steer` initialised from the Steerer's solution, all parameters fine-tuned "
        f"with `CE + {cfg['ft_lambda']:g}·ideal_gap` on the steered features ({cfg['ft_epochs']} epochs, "
        f"lr {cfg['ft_lr']:g}).",
        f"* (v) each (iii) model + its own frozen `{cfg['combo_map']}` Steer (Steerer fitted on its training "
        "features) + head retrained as in (ii).",
        "",
        f"Class-balance weights `q̃/q` `[class, group]` = {W} (affirmative: women get men's base rate, "
        "0.31 instead of 0.11; what `Steerer.sample_weight` returns), normalised to mean 1.",
        "",
        "ΔDP: demographic-parity difference; ΔEO: equal-opportunity difference (TPR gap of class 1); "
        "test gap: `ideal_gap` (nats, symmetric form) of the test split's features as the head sees them "
        "(steered for (ii), (iv), (v)). Paired Δ: per-seed difference from (i) (same initialisation and "
        "batch order), mean ± sd.",
        "",
        "Reading notes. A group-aware Bayes rule and the `affine`-form ideal gap are invariant under "
        "per-group affine maps of the features, so a `Steer` changes only what the *group-blind* head "
        "sees; a small gap says the groups' class-conditional laws are affine images of each other, and "
        "the `align` map undoes those images. The symmetric-form gap is not invariant, so a Steer can "
        "raise it. The gap includes the prior part `KL(q̃‖q)` of the unequal base rates, which no feature "
        "map changes.",
    ]
    for w, t in res["tables"].items():
        lines += ["", f"## {TITLES[w]}", "",
                  "| method | accuracy | ΔDP | ΔEO | test gap (nats) | paired Δ accuracy | paired Δ ΔDP | paired Δ ΔEO |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, s in t["summary"].items():
            d = t["paired_vs_plain"].get(name, {})
            lines.append(f"| {name} | {_pm(s, 'accuracy')} | {_pm(s, 'dp')} | {_pm(s, 'eo')} | "
                         f"{_pm(s, 'test_gap')} | {_pm(d, 'accuracy')} | {_pm(d, 'dp')} | {_pm(d, 'eo')} |")
    infos = [r for rows in res["steerers"].values() for r in rows]
    if infos:
        kls = [r["kl"] for r in infos]
        bad = [r for r in infos if not r["converged"]]
        lines += ["", f"Steerer fits ({len(infos)}): KL to the nearest ideal family {min(kls):.4f}–{max(kls):.4f} "
                  f"nats; {len(bad)} stopped before the solver's tolerance"
                  + (f" (largest residual {max(r['residual'] for r in bad):.2g})" if bad else "") + "."]
    sp = res["step_seconds"]
    if sp["plain"] and sp["with_ideal_gap"]:
        lines += ["", f"Step time (median, after compilation, this machine): plain {1e3 * sp['plain']:.1f} ms, "
                  f"with the warm-started ideal_gap {1e3 * sp['with_ideal_gap']:.1f} ms "
                  f"(minibatch {cfg['batch']}, d = {cfg['d']}). Compilations of the training steps: "
                  f"{len(res['step_compilations'])}. Steps skipped for a non-finite loss or gradient: "
                  f"{res['skipped_steps']}."]
    env = res.get("environment", {})
    lines += ["", f"Total run time {res.get('seconds', float('nan')):.0f} s on {env.get('cpus', '?')} CPU core(s) "
              f"shared with other jobs ({env.get('machine', '')}; jax {env.get('jax', '')}, "
              f"flax {env.get('flax', '')}).", "", f"![accuracy against ΔEO and ΔDP]({STEM}.png)", ""]
    return "\n".join(lines)


def figure(res, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        print("matplotlib is not installed: no figure")
        return None
    tables = res["tables"]
    fig, axes = plt.subplots(len(tables), 2, figsize=(12, 4.6 * len(tables)), squeeze=False)
    lams = res["config"]["lambdas"]
    for row, (w, t) in enumerate(tables.items()):
        summ = t["summary"]
        base = "(i) plain, class-balance weights" if w == "ideal" else PLAIN
        for ax, k, label in ((axes[row, 0], "eo", "ΔEO (TPR gap) on test"), (axes[row, 1], "dp", "ΔDP on test")):
            def curve(names, tags, fmt, color, legend, dy):
                names = [n for n in names if n in summ]
                xs = [summ[n][k]["mean"] for n in names]
                ys = [summ[n]["accuracy"]["mean"] for n in names]
                ax.errorbar(xs, ys, xerr=[summ[n][k]["sd"] for n in names],
                            yerr=[summ[n]["accuracy"]["sd"] for n in names], fmt=fmt, color=color, capsize=3,
                            label=legend)
                for tag, x, y in zip(tags, xs, ys):
                    ax.annotate(tag, (x, y), textcoords="offset points", xytext=(5, dy), fontsize=7, color=color)

            curve([base] + [f"(iii) ideal_gap λ={lam:g}" for lam in lams], ["λ=0"] + [f"λ={lam:g}" for lam in lams],
                  "o-", "C0", f"(iii) ideal_gap sweep (λ = 0: {base})", 5)
            curve([f"(v) ideal_gap λ={lam:g} + frozen Steer ({res['config']['combo_map']}) + head" for lam in lams],
                  [f"λ={lam:g}" for lam in lams], "o--", "C5", "(v) (iii) + frozen align Steer + head", -10)
            others = [n for n in summ if n.split(" ")[0] in ("(ii)", "(iv)")] + ([PLAIN] if base != PLAIN else [])
            for j, n in enumerate(others):
                s = summ[n]
                ax.errorbar(s[k]["mean"], s["accuracy"]["mean"], xerr=s[k]["sd"], yerr=s["accuracy"]["sd"],
                            fmt="s^Dvx"[j % 5], color=f"C{j + 1}" if n != PLAIN else "k", capsize=3, label=n)
            ax.set_xlabel(label + " (lower is fairer)")
            ax.set_ylabel("test accuracy")
            ax.set_title(TITLES[w], fontsize=9)
            ax.grid(alpha=0.3)
        axes[row, 1].legend(fontsize=7, loc="best")
    n = res["config"]["seeds"]
    fig.suptitle(f"Adult (sex), NNX MLP, mean ± sd over {n} seed{'s' if n > 1 else ''}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="one seed, a small subset, a few steps (a smoke test)")
    ap.add_argument("--out", default=None,
                    help="output folder (default benchmarks/results; a temporary folder with --quick)")
    ap.add_argument("--weights", default="none,ideal",
                    help="comma-separated: 'none' (unweighted) and/or 'ideal' (class-balance weights q̃/q in the "
                         "cross-entropy of (ii)-(v)); one table each (default both)")
    ap.add_argument("--form", default="affine", choices=("affine", "symmetric"), help="the Steerer's form")
    ap.add_argument("--epochs", type=int, default=None, help="epochs of (i) and (iii) (default 20)")
    ap.add_argument("--batch", type=int, default=None, help="minibatch size (default 2048)")
    ap.add_argument("--lambdas", default=None, help="comma-separated λ > 0 of (iii) (default 0.1,0.3,1,3)")
    ap.add_argument("--no-figure", action="store_true", help="skip the PNG")
    args = ap.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        ap.error("--seeds: must be >= 1")
    if not set(args.weights.split(",")) <= {"none", "ideal"} or not args.weights:
        ap.error("--weights: a comma-separated subset of none,ideal")
    cfg = _config(args)
    if not cfg["lambdas"]:
        ap.error("--lambdas: give at least one λ > 0")
    out = args.out
    if out is None:
        out = tempfile.mkdtemp(prefix=STEM + "_") if args.quick else os.path.join("benchmarks", "results")
    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    res = run(cfg)
    res["quick"] = bool(args.quick)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    res["environment"] = environment()
    base = os.path.join(out, STEM)
    publish(base, res, markdown(res), figure=None if args.no_figure else figure)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
