"""Group-fair steering of a generative model: does a steering vector work equally well for women and men?

    python -m benchmarks.experiments.generative_steering [--quick] [--out benchmarks/results/generative_steering]
        [--cache DIR] [--layer L] [--n-eval N] [--verdict FILE]
    python -m benchmarks.experiments.generative_steering --from-json RESULTS.json --verdict FILE   # rewrite the report

The model is the small decoder of ``tiny_decoder.py`` (trained once and cached), which reads an Adult
biography and continues "... She|He earns" with ``over`` or ``under`` "50K a year.". The desired
output is the next token ``over``; the groups are sex (0 = female, 1 = male).

**Where it steers.** The residual stream after ``--layer`` of the model's blocks (default 2 of 3), at
the *slot* (the position of ``earns``, whose output is the over/under word) only; the remaining blocks
and the LM head then run on the steered stream, so the continuation after the slot also sees the
steered state (its NLL measures the damage). Every method is ``h ↦ A[a] h + b[a] + α V[a]`` at the slot:

* ``pooled``: ``A = I``, ``b = 0``, ``V`` = mean difference of the slot states of over and under rows
  (training split, both groups pooled);
* ``per-group``: ``V[a]`` = that difference within group ``a``;
* ``MM + pooled``, ``MiMiC + pooled``, ``LEACE + pooled``: the baseline's map (``jaxsteer.baselines``,
  fitted on the training slot states), then the pooled difference of the *mapped* states;
* ``oracle α``: the pooled vector with a separate ``α`` for women, chosen on the evaluation rows so that
  their flip rate ``P(over | y = under, a)`` matches the men's at ``α`` (fine grid, step ``oracle_step``);
  one oracle per readout. It matches the flip rate, the per-class rate that ``fair_steering``'s guarantee
  equalises, not the success rate, whose gap also contains the groups' different base rates;
* ``EF affine``, ``EF symmetric``: :func:`jaxsteer.fair_steering` (intervention ``affirmative``, the
  reference group is the larger one, men, whose states are left as they are before ``α v`` is added),
  applied with :class:`jaxsteer.steering_vectors.FairSteer` (checked against the generic formula).

**Two readouts, kept apart.** (R1) the frozen model: the remaining blocks and the LM head; success =
the greedy next token is ``over``. (R2) a readout refitted on the steered states: a logistic regression
(income labels, training rows) on the method's slot states at ``α = 0`` (its map applied), applied to the
steered states ``map(h) + α V`` at every ``α``; for EF this estimates the Bayes-optimal readout of the
steered (ideal) distribution, which is what the guarantee of ``fair_steering`` covers. R1 is not covered.

**Metrics** (evaluation rows from the held-out split; 95% bootstrap percentile intervals over rows,
resampled within each group): per group the success rate ``P(over | a)`` and the flip rate
``P(over | y = under, a)``, and their gap female − male; utility (R1): the probability mass left on
{over, under} at the slot, the NLL per token of the fixed continuation "50k a year ." after ``over``,
and ``KL(p_steered ‖ p_unsteered)`` of the next-token distribution at the slot. The comparison at equal
strength interpolates every curve at the ``α`` where the method's flip rate over both groups reaches
the configuration's ``match`` (default 0.5). On the default model the fixed continuation is predicted
almost surely whatever the slot's state (NLL about 3e-4 nats per token, steered or not), so mass and NLL
hardly separate the methods; KL grows with how far the next-token distribution is moved.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks.experiments import _common
from benchmarks.experiments import tiny_decoder as td

STEM = "generative_steering"
FEMALE, MALE = 0, 1
GROUP_NAMES = ("female", "male")
# α is in units of each method's own mean-difference vector (α = 1 moves the "under" class mean on to the
# "over" class mean); on the default model every method saturates (success > 0.96 in both groups) by α = 2.
DEFAULTS = dict(layer=2, n_fit=None, n_eval=4000, alphas=(0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0),
                oracle_step=0.1, oracle_max=3.0, bootstrap=400, match=0.5, batch=500, seed=0,
                table_alphas=(0.5, 1.0, 2.0), summary_max=1.5)
QUICK = dict(DEFAULTS, layer=1, n_eval=600, alphas=(0.0, 0.5, 1.0, 2.0, 3.0), oracle_step=0.25, oracle_max=4.0,
             bootstrap=100)


# -- steering, vectorised over rows ----------------------------------------------------------------


def steer_slot(h, slot, g, A, b, V, alpha):
    """``A[g] h + b[g] + α V[g]`` at position ``slot`` of every sequence; other positions unchanged.

    ``h [B, T, d]``, ``slot``, ``g``, ``alpha [B]``, ``A [m, d, d]``, ``b``, ``V [m, d]``.
    """
    picked = jnp.take_along_axis(h, slot[:, None, None], axis=1)[:, 0]  # [B, d]
    new = jnp.einsum("bij,bj->bi", A[g], picked) + b[g] + alpha[:, None] * V[g]
    at = (jnp.arange(h.shape[1])[None, :] == slot[:, None])[..., None]
    return jnp.where(at, new[:, None, :].astype(h.dtype), h)


@nnx.jit(static_argnums=(2,))
def _hidden_at(model, tokens, layer, slot):
    h = model.hidden(tokens, layer)
    return h, jnp.take_along_axis(h, slot[:, None, None], axis=1)[:, 0]


def _tail_logits(model, h, layer, slot):
    """Logits ``[B, 5, V]`` at the slot and the 4 continuation positions, from the stream after ``layer`` blocks."""
    for block in model.blocks[layer:]:
        h = block(h)
    pos = slot[:, None] + jnp.arange(5)[None, :]
    h = jnp.take_along_axis(h, pos[..., None], axis=1)
    return model.unembed(model.ln_f(h))


@nnx.jit(static_argnums=(2,))
def _slot_logp(model, h, layer, slot):
    return jax.nn.log_softmax(_tail_logits(model, h, layer, slot).astype(jnp.float32)[:, 0], axis=-1)


@nnx.jit(static_argnums=(3,))
def _outcomes(model, h, tokens, layer, slot, g, A, b, V, alpha, logp0, ids):
    """Per-row outcomes of one steered forward pass: p(over), p(under), greedy==over, KL at slot, continuation NLL."""
    hs = steer_slot(h, slot, g, A, b, V, alpha)
    logp = jax.nn.log_softmax(_tail_logits(model, hs, layer, slot).astype(jnp.float32), axis=-1)  # [B, 5, V]
    over, under = ids[0], ids[1]
    slot_lp = logp[:, 0]
    kl = jnp.sum(jnp.exp(slot_lp) * (slot_lp - logp0), axis=-1)
    targets = jnp.take_along_axis(tokens, (slot[:, None] + 2 + jnp.arange(4)[None, :]), axis=1)  # "50k a year ."
    nll = -jnp.mean(jnp.take_along_axis(logp[:, 1:], targets[..., None], axis=2)[..., 0], axis=1)
    return dict(p_over=jnp.exp(slot_lp[:, over]), p_under=jnp.exp(slot_lp[:, under]),
                greedy_over=jnp.argmax(slot_lp, axis=-1) == over, kl=kl, nll=nll)


# -- methods ---------------------------------------------------------------------------------------


def _affine_of(transform, d: int, m: int):
    """``(A [m, d, d], b [m, d])`` of a per-group affine map given as ``transform(X, a)``, by probing."""
    probe = np.vstack([np.zeros((1, d)), np.eye(d)])
    A, b = np.zeros((m, d, d)), np.zeros((m, d))
    for g in range(m):
        out = np.asarray(transform(probe, np.full(d + 1, g)), np.float64)
        b[g] = out[0]
        A[g] = (out[1:] - out[0]).T
    return A, b


def _mean_diff(H, y):
    return H[y == 1].mean(0) - H[y == 0].mean(0)


def build_methods(H, y, a, log=print) -> dict:
    """Every method's ``(A, b, V)`` and fit information, fitted on the training slot states ``H [n, d]``."""
    import jaxsteer as js
    from jaxsteer import baselines

    n, d = H.shape
    m = 2
    eye = np.broadcast_to(np.eye(d), (m, d, d)).copy()
    zero = np.zeros((m, d))
    v = _mean_diff(H, y)
    out = {"pooled": dict(A=eye, b=zero, V=np.tile(v, (m, 1)), info={})}
    out["per-group"] = dict(A=eye, b=zero, V=np.stack([_mean_diff(H[a == g], y[a == g]) for g in range(m)]),
                            info={})
    for name, cls in (("MM", baselines.MeanMatching), ("MiMiC", baselines.MiMiC), ("LEACE", baselines.LEACE)):
        t0 = time.perf_counter()
        est = cls().fit(H, y, a)
        if name == "LEACE":
            A, b = _affine_of(lambda X, g: est.transform(X), d, m)
        else:
            A, b = _affine_of(est.transform, d, m)
        Hm = np.einsum("nij,nj->ni", A[a], H) + b[a]
        out[f"{name} + pooled"] = dict(A=A, b=b, V=np.tile(_mean_diff(Hm, y), (m, 1)),
                                       info={"fit_seconds": round(time.perf_counter() - t0, 2)})
    for form in ("affine", "symmetric"):
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fs = js.fair_steering(H, y, a, form=form)
        sol = fs.solution
        info = {"kl": float(sol.kl), "converged": bool(np.all(np.asarray(sol.converged))),
                "residual": float(np.max(np.asarray(sol.residual))), "reference": GROUP_NAMES[sol.reference],
                "fit_seconds": round(time.perf_counter() - t0, 2), "warnings": [str(w.message) for w in caught]}
        log(f"  EF {form}: KL {info['kl']:.4f} nats, converged {info['converged']}, {info['fit_seconds']} s")
        out[f"EF {form}"] = dict(A=np.asarray(fs.map.A), b=np.asarray(fs.map.b),
                                 V=np.tile(np.asarray(fs.direction), (m, 1)), info=info, steering=fs)
    return out


# -- bootstrap -------------------------------------------------------------------------------------


class Bootstrap:
    """Paired percentile bootstrap over evaluation rows, resampled within (group) and (group, y = under)."""

    def __init__(self, a, y, B: int, seed: int):
        rng = np.random.default_rng(seed)
        self.idx = {}
        for g in range(2):
            for kind, sel in (("all", a == g), ("under", (a == g) & (y == 0))):
                rows = np.flatnonzero(sel)
                self.idx[g, kind] = (rows, rows[rng.integers(0, len(rows), (B, len(rows)))])

    def rate(self, x, g, kind):
        """Point estimate and ``[B]`` replicates of the mean of ``x`` over the group's rows."""
        rows, boot = self.idx[g, kind]
        return float(np.mean(x[rows])), np.mean(x[boot], axis=1)


def _ci(reps):
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return [float(lo), float(hi)]


def summarize(x, boot: Bootstrap) -> dict:
    """Per-group success and flip rates of a binary per-row outcome ``x``, and female − male gaps, with CIs."""
    res = {}
    for kind, name in (("all", "success"), ("under", "flip")):
        est, reps = zip(*(boot.rate(x.astype(float), g, kind) for g in range(2)))
        res[name] = {GROUP_NAMES[g]: est[g] for g in range(2)}
        res[name]["gap"] = est[FEMALE] - est[MALE]
        res[name]["gap_ci"] = _ci(reps[FEMALE] - reps[MALE])
        res[name]["ci"] = {GROUP_NAMES[g]: _ci(reps[g]) for g in range(2)}
    return res


# -- the experiment --------------------------------------------------------------------------------


def run(cfg: dict, model_cfg: dict, cache="default", log=print) -> dict:
    t_start = time.perf_counter()
    prep = td.prepare(model_cfg, cache=cache, log=log)
    gate = td.quality_gate(prep)
    log(f"quality gate: LM AUC {gate['auc_lm']:.4f}, LR (stated features) {gate['auc_lr_stated']:.4f}, "
        f"LR (all features) {gate['auc_lr_all']:.4f} -> {'passed' if gate['passed'] else 'FAILED'}")
    model, vocab = prep["model"], prep["vocab"]
    layer = int(cfg["layer"])
    if not 1 <= layer <= len(model.blocks):
        raise ValueError(f"layer: must be in 1..{len(model.blocks)}, got {layer}.")
    tokens, slot, y, a = prep["tokens"], prep["slot"], prep["y"], prep["a"]
    rng = np.random.default_rng(cfg["seed"])
    fit_rows = prep["train"] if cfg["n_fit"] is None else np.sort(rng.choice(prep["train"], cfg["n_fit"], False))
    te = prep["test"]
    ev = te if cfg["n_eval"] is None or cfg["n_eval"] >= len(te) else np.sort(rng.choice(te, cfg["n_eval"], False))
    over, under = vocab.id(td.OVER), vocab.id(td.UNDER)
    ids = jnp.asarray([over, under])
    B = cfg["batch"]

    def states(rows):
        full, at = [], []
        for i in range(0, len(rows), B):
            r = rows[i:i + B]
            hf, hs = _hidden_at(model, jnp.asarray(tokens[r]), layer, jnp.asarray(slot[r]))
            full.append(hf)
            at.append(np.asarray(hs, np.float64))
        return full, np.concatenate(at)

    t0 = time.perf_counter()
    _, H = states(fit_rows)
    H_ev_full, H_ev = states(ev)
    log(f"slot states after block {layer}: {len(fit_rows)} training rows, {len(ev)} evaluation rows, "
        f"d = {H.shape[1]} ({time.perf_counter() - t0:.1f} s)")
    # the continuation is fixed: the slot's next word is "over" whatever the row's label
    tok_ev = tokens[ev].copy()
    tok_ev[np.arange(len(ev)), slot[ev] + 1] = over
    tok_b = [jnp.asarray(tok_ev[i:i + B]) for i in range(0, len(ev), B)]
    slot_b = [jnp.asarray(slot[ev][i:i + B]) for i in range(0, len(ev), B)]
    g_b = [jnp.asarray(a[ev][i:i + B]) for i in range(0, len(ev), B)]
    d = H.shape[1]
    eye = jnp.broadcast_to(jnp.eye(d), (2, d, d)).astype(jnp.float32)
    zero = jnp.zeros((2, d), jnp.float32)
    logp0 = [_slot_logp(model, hb, layer, sb) for hb, sb in zip(H_ev_full, slot_b)]  # the unsteered model

    def forward(A, b, V, alpha_rows):
        """Per-row outcomes (numpy) of the steered model over every evaluation row."""
        parts = []
        A, b, V = (jnp.asarray(x, jnp.float32) for x in (A, b, V))
        for i, (hb, tb, sb, gb, l0) in enumerate(zip(H_ev_full, tok_b, slot_b, g_b, logp0)):
            al = jnp.asarray(alpha_rows[i * B:(i + 1) * B], jnp.float32)
            parts.append(_outcomes(model, hb, tb, layer, sb, gb, A, b, V, al, l0, ids))
        return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}

    base = forward(eye, zero, zero, np.zeros(len(ev)))
    assert np.max(np.abs(base["kl"])) < 1e-4  # the unsteered pass reproduces the model

    t0 = time.perf_counter()
    methods = build_methods(H, y[fit_rows], a[fit_rows], log=log)
    fit_seconds = time.perf_counter() - t0
    # FairSteer (the package module) against the generic formula used for every method
    ef = methods["EF affine"]
    steer = ef["steering"]
    from jaxsteer.steering_vectors import FairSteer

    module = FairSteer.from_steering(steer, alpha=1.5, dtype=jnp.float32)
    h0 = H_ev_full[0]
    mod_out = module(h0, g_b[0], index=slot_b[0])
    gen_out = steer_slot(h0, slot_b[0], g_b[0], jnp.asarray(ef["A"], jnp.float32), jnp.asarray(ef["b"], jnp.float32),
                         jnp.asarray(ef["V"], jnp.float32), jnp.full(h0.shape[0], 1.5, jnp.float32))
    module_check = float(jnp.max(jnp.abs(mod_out - gen_out)))
    assert module_check < 1e-3, module_check

    # R2 readouts: logistic regression on each method's slot states at α = 0 (training rows)
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    alphas = np.asarray(cfg["alphas"], float)
    boot = Bootstrap(a[ev], y[ev], cfg["bootstrap"], cfg["seed"] + 7)
    yev, aev = y[ev], a[ev]
    results, curves = {}, {}
    fine = np.union1d(np.round(np.arange(0.0, cfg["oracle_max"] + 1e-9, cfg["oracle_step"]), 6), np.round(alphas, 6))
    t0 = time.perf_counter()
    for name, meth in methods.items():
        A, b, V = meth["A"], meth["b"], meth["V"]
        a_fit = a[fit_rows]
        S_fit = np.einsum("nij,nj->ni", A[a_fit], H) + b[a_fit]
        S_ev = np.einsum("nij,nj->ni", A[aev], H_ev) + b[aev]
        sc = StandardScaler().fit(S_fit)
        clf = LogisticRegression(C=1.0, max_iter=2000).fit(sc.transform(S_fit), y[fit_rows])
        w = clf.coef_[0] / sc.scale_
        c = clf.intercept_[0] - np.dot(w, sc.mean_)
        grid = fine if name == "pooled" else alphas  # the oracle needs the pooled vector on a fine grid
        per_alpha = {}
        for al in grid:
            r1 = forward(A, b, V, np.full(len(ev), al))
            r2 = (S_ev + al * V[aev]) @ w + c > 0
            per_alpha[float(al)] = dict(r1=r1, r2=r2)
        curves[name] = per_alpha
        log(f"  {name}: {len(grid)} α values ({time.perf_counter() - t0:.0f} s)")
    eval_seconds = time.perf_counter() - t0

    # oracle α: women's α on the fine pooled grid whose flip rate (per readout) best matches men's at α
    def rate(x, g):
        return float(np.mean(x[aev == g]))

    def flip(x, g):
        return float(np.mean(x[(aev == g) & (yev == 0)]))

    def decided(readout, al):
        out = curves["pooled"][float(al)][readout]
        return out["greedy_over"] if readout == "r1" else out

    oracle = {}
    for readout in ("r1", "r2"):
        chosen = {}
        for al in alphas:
            target = flip(decided(readout, al), MALE)
            errs = [abs(flip(decided(readout, f), FEMALE) - target) for f in fine]
            chosen[float(al)] = float(fine[int(np.argmin(errs))])
        oracle[readout] = chosen

    def combine(readout, al):
        """Oracle rows: men at α, women at their oracle α (per-row outcomes of the pooled vector)."""
        men = curves["pooled"][float(al)][readout]
        women = curves["pooled"][oracle[readout][float(al)]][readout]
        if isinstance(men, dict):
            return {k: np.where(aev == FEMALE, women[k], men[k]) for k in men}
        return np.where(aev == FEMALE, women, men)

    names = list(methods) + ["oracle α"]
    for name in names:
        rows = []
        for al in alphas:
            if name == "oracle α":
                r1, r2 = combine("r1", al), combine("r2", al)
            else:
                r1, r2 = curves[name][float(al)]["r1"], curves[name][float(al)]["r2"]
            entry = {"alpha": float(al), "R1": summarize(r1["greedy_over"], boot), "R2": summarize(r2, boot),
                     "R1_overall": {"success": float(np.mean(r1["greedy_over"])),
                                    "flip": float(np.mean(r1["greedy_over"][yev == 0]))},
                     "R2_overall": {"success": float(np.mean(r2)), "flip": float(np.mean(r2[yev == 0]))},
                     "p_over": {GROUP_NAMES[g]: rate(r1["p_over"], g) for g in range(2)},
                     "utility": {}}
            for k in ("mass", "nll", "kl"):
                x = r1["p_over"] + r1["p_under"] if k == "mass" else r1[k]
                est, reps = boot.rate(x, FEMALE, "all")
                est_m, reps_m = boot.rate(x, MALE, "all")
                nf, nm = np.sum(aev == FEMALE), np.sum(aev == MALE)
                entry["utility"][k] = {"female": est, "male": est_m, "all": float(np.mean(x)),
                                       "ci": _ci((nf * reps + nm * reps_m) / (nf + nm))}
            if name == "oracle α":
                entry["oracle_alpha_female"] = {"R1": oracle["r1"][float(al)], "R2": oracle["r2"][float(al)]}
            rows.append(entry)
        results[name] = rows
    matched = {name: matched_point(results[name], cfg["match"]) for name in names}
    out = {
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
        "model": {k: v for k, v in prep["cfg"].items()},
        "model_train_seconds": prep["train_seconds"], "model_cached": prep["cached"],
        "vocab_size": len(vocab), "seq_len": int(tokens.shape[1]), "quality_gate": gate,
        "n_fit": int(len(fit_rows)), "n_eval": int(len(ev)),
        "eval_groups": {GROUP_NAMES[g]: int(np.sum(aev == g)) for g in range(2)},
        "eval_under": {GROUP_NAMES[g]: int(np.sum((aev == g) & (yev == 0))) for g in range(2)},
        "train_base_rates": {GROUP_NAMES[g]: float(np.mean(y[fit_rows][a[fit_rows] == g])) for g in range(2)},
        "unsteered": {"R1": summarize(base["greedy_over"], boot),
                      "mass": float(np.mean(base["p_over"] + base["p_under"])), "nll": float(np.mean(base["nll"]))},
        "methods": {name: {k: v for k, v in methods[name]["info"].items()} for name in methods},
        "vector_norms": {name: [float(np.linalg.norm(methods[name]["V"][g])) for g in range(2)] for name in methods},
        "module_check_max_abs": module_check,
        "oracle_alpha_female": oracle,
        "results": results, "matched": matched,
        "example": prep["texts"][int(ev[0])],
        "seconds": {"fit_methods": round(fit_seconds, 1), "evaluate": round(eval_seconds, 1),
                    "total": round(time.perf_counter() - t_start, 1)},
        "environment": _common.environment(),
    }
    return out


def matched_point(rows, target: float) -> dict:
    """Every curve interpolated at the ``α`` where the flip rate over both groups reaches ``target`` (per readout)."""
    res = {}
    al = np.array([r["alpha"] for r in rows])
    for readout in ("R1", "R2"):
        overall = np.array([r[f"{readout}_overall"]["flip"] for r in rows])
        hit = np.flatnonzero(overall >= target)
        if hit.size == 0:  # never reached on the grid
            res[readout] = None
            continue
        j = int(hit[0])
        if j == 0:  # reached at the first α already: report that point
            t, lo, hi = 0.0, 0, 0
        else:  # linear interpolation between the last α below the target and the first at or above it
            lo, hi = j - 1, j
            t = (target - overall[lo]) / max(overall[hi] - overall[lo], 1e-12)

        def lerp(f):
            return float((1 - t) * f(rows[lo]) + t * f(rows[hi]))

        res[readout] = {
            "alpha": lerp(lambda r: r["alpha"]),
            "flip_female": lerp(lambda r: r[readout]["flip"]["female"]),
            "flip_male": lerp(lambda r: r[readout]["flip"]["male"]),
            "flip_gap": lerp(lambda r: r[readout]["flip"]["gap"]),
            "flip_gap_ci": [lerp(lambda r: r[readout]["flip"]["gap_ci"][0]), lerp(lambda r: r[readout]["flip"]["gap_ci"][1])],
            "success_gap": lerp(lambda r: r[readout]["success"]["gap"]),
            "mass": lerp(lambda r: r["utility"]["mass"]["all"]),
            "nll": lerp(lambda r: r["utility"]["nll"]["all"]),
            "kl": lerp(lambda r: r["utility"]["kl"]["all"]),
        }
    return res


# -- reporting -------------------------------------------------------------------------------------


def _gap(s):
    return f"{s['gap']:+.3f} [{s['gap_ci'][0]:+.3f}, {s['gap_ci'][1]:+.3f}]"


def markdown(res: dict, verdict: str | None = None) -> str:
    cfg, gate = res["config"], res["quality_gate"]
    mc = res["model"]
    lines = [
        "# Group-fair steering of a generative model (issue 18)", "",
        f"`python -m benchmarks.experiments.{STEM}{' --quick' if res.get('quick') else ''}` — "
        f"{res['seconds']['total']:.0f} s on {res['environment']['cpus']} CPU cores (model "
        f"{'read from the cache' if res['model_cached'] else 'trained in this run'}; training took "
        f"{res['model_train_seconds']:.0f} s), jax {res['environment']['jax']}.", "",
        "## Model and quality gate", "",
        f"A decoder-only transformer in Flax NNX (`benchmarks/experiments/tiny_decoder.py`): d = {mc['d_model']}, "
        f"{mc['layers']} blocks, {mc['heads']} heads, word-level vocabulary of {res['vocab_size']} words, sequences of "
        f"{res['seq_len']} tokens, {mc['steps']} AdamW steps of {mc['batch']} on the 70% training split of the Adult "
        "biographies, each ending \"She/He earns over/under 50K a year.\". Example:", "",
        f"> {res['example']}", "",
        f"Held-out ROC AUC of P(\"over\") at the slot: **{gate['auc_lm']:.4f}** ({gate['n_test']} rows); logistic "
        f"regression on the raw features the biography states: {gate['auc_lr_stated']:.4f}; on all Adult features "
        f"(occupation included, which the text omits): {gate['auc_lr_all']:.4f}. Gate (within "
        f"{gate['tolerance']:.2f} of the stated-feature regression): **{'passed' if gate['passed'] else 'FAILED'}**. "
        f"Mass on {{over, under}} at the slot {gate['mass_over_under']:.3f}; accuracy of over-vs-under "
        f"{gate['accuracy_lm']:.3f}.", "",
        "## Setup", "",
        f"Steered: the residual stream after block {cfg['layer']} of {mc['layers']} at the slot (`earns`); the remaining "
        f"block(s) and the head run on it. Methods fitted on {res['n_fit']} training slot states; evaluated on "
        f"{res['n_eval']} held-out rows ({res['eval_groups']['female']} women, {res['eval_groups']['male']} men; "
        f"under-50K: {res['eval_under']['female']} / {res['eval_under']['male']}). Training base rates of \"over\": "
        f"women {res['train_base_rates']['female']:.3f}, men {res['train_base_rates']['male']:.3f}. "
        f"Bootstrap: {cfg['bootstrap']} resamples within each group; intervals are 95% percentile intervals. "
        "Success = P(over | a); flip = P(over | y = under, a); gap = female − male. R1 = frozen model (greedy next "
        "token); R2 = a logistic regression refitted on the method's mapped states (α = 0, training rows), applied "
        "to the steered states at every α. Utility columns (R1, "
        "all rows): mass on {over, under}, NLL per token of \"50k a year .\" after \"over\", KL(steered ‖ unsteered) "
        "of the next-token distribution at the slot.", "",
        f"Unsteered model: R1 success women {res['unsteered']['R1']['success']['female']:.3f}, men "
        f"{res['unsteered']['R1']['success']['male']:.3f}; flip {res['unsteered']['R1']['flip']['female']:.3f} / "
        f"{res['unsteered']['R1']['flip']['male']:.3f}; mass {res['unsteered']['mass']:.3f}; continuation NLL "
        f"{res['unsteered']['nll']:.1e}.", "",
    ]
    ef = {k: v for k, v in res["methods"].items() if k.startswith("EF")}
    lines += ["EF fits (affirmative, reference " + next(iter(ef.values()))["reference"] + "): " + "; ".join(
        f"{k}: KL(θ̃‖θ) {v['kl']:.4f} nats, converged {v['converged']}, {v['fit_seconds']:.0f} s" for k, v in ef.items())
        + f". FairSteer module vs the generic formula: max |Δ| {res['module_check_max_abs']:.1e}.", ""]
    lines += ["## At equal strength", "",
              f"Every curve interpolated at the α where the method's flip rate over both groups reaches {cfg['match']}.", "",
              "| method | readout | α | flip women | flip men | flip gap [95% CI] | success gap | mass | NLL | KL |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name, mp in res["matched"].items():
        for readout in ("R1", "R2"):
            p = mp.get(readout)
            if not p or "flip_gap" not in p:
                lines.append(f"| {name} | {readout} | not reached in the grid | | | | | | | |")
                continue
            lines.append(f"| {name} | {readout} | {p['alpha']:.2f} | {p['flip_female']:.3f} | {p['flip_male']:.3f} | "
                         f"{p['flip_gap']:+.3f} [{p['flip_gap_ci'][0]:+.3f}, {p['flip_gap_ci'][1]:+.3f}] | "
                         f"{p['success_gap']:+.3f} | {p['mass']:.3f} | {p['nll']:.1e} | {p['kl']:.3f} |")
    top = cfg.get("summary_max", 1.5)
    lines += ["", "## Across the sweep", "",
              f"The flip gap female − male over the grid's α ≤ {top:g} (above it the success rates of every method "
              "approach 1 in both groups and the gaps shrink to 0 whatever the method): mean |gap| and the most "
              "negative / most positive gap.",
              "", "| method | R1 mean \\|gap\\| | R1 range | R2 mean \\|gap\\| | R2 range |", "|---|---|---|---|---|"]
    for name, rows in res["results"].items():
        cells = []
        for readout in ("R1", "R2"):
            gaps = np.array([r[readout]["flip"]["gap"] for r in rows if r["alpha"] <= top + 1e-9])
            cells += [f"{np.mean(np.abs(gaps)):.3f}", f"[{gaps.min():+.3f}, {gaps.max():+.3f}]"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for al in cfg["table_alphas"]:
        lines += ["", f"## α = {al}", "",
                  "| method | R1 success w / m | R1 flip w / m | R1 flip gap [95% CI] | R2 flip w / m | R2 flip gap [95% CI] "
                  "| mass | NLL | KL |", "|---|---|---|---|---|---|---|---|---|"]
        for name, rows in res["results"].items():
            r = next((x for x in rows if abs(x["alpha"] - al) < 1e-9), None)
            if r is None:
                continue
            u = r["utility"]
            lines.append(
                f"| {name} | {r['R1']['success']['female']:.3f} / {r['R1']['success']['male']:.3f} | "
                f"{r['R1']['flip']['female']:.3f} / {r['R1']['flip']['male']:.3f} | {_gap(r['R1']['flip'])} | "
                f"{r['R2']['flip']['female']:.3f} / {r['R2']['flip']['male']:.3f} | {_gap(r['R2']['flip'])} | "
                f"{u['mass']['all']:.3f} | {u['nll']['all']:.1e} | {u['kl']['all']:.3f} |")
    lines += ["", "Oracle α for women (pooled vector, men at α, women at the α of the grid whose flip rate is "
              "closest to the men's; chosen on the evaluation rows): R1 "
              + ", ".join(f"{float(k):g}→{float(v):g}" for k, v in res["oracle_alpha_female"]["r1"].items()) + "; R2 "
              + ", ".join(f"{float(k):g}→{float(v):g}" for k, v in res["oracle_alpha_female"]["r2"].items()) + ".", "",
              f"![per-group success against α]({STEM}.png)", "",
              f"Every number, every α and every interval: `{STEM}.json`. Run time: methods fitted in "
              f"{res['seconds']['fit_methods']:.0f} s, sweep {res['seconds']['evaluate']:.0f} s, total "
              f"{res['seconds']['total']:.0f} s."]
    if verdict:
        lines += ["", "## Verdict", "", verdict]
    return "\n".join(lines) + "\n"


def figure(res: dict, path: str) -> None:
    """Per-group success against α for every method (R1 solid, R2 dashed), then the flip gap of every method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(res["results"])
    cols = 4
    rows_n = int(np.ceil(len(names) / cols))
    fig = plt.figure(figsize=(4 * cols, 3.3 * rows_n + 3.8))
    grid = fig.add_gridspec(rows_n + 1, cols, height_ratios=[1] * rows_n + [1.15])
    axes = [fig.add_subplot(grid[i // cols, i % cols]) for i in range(len(names))]
    colors = {"female": "tab:red", "male": "tab:blue"}
    for i, (ax, name) in enumerate(zip(axes, names)):
        rows = res["results"][name]
        al = [r["alpha"] for r in rows]
        for readout, ls in (("R1", "-"), ("R2", "--")):
            for g in GROUP_NAMES:
                y = [r[readout]["success"][g] for r in rows]
                lo = [r[readout]["success"]["ci"][g][0] for r in rows]
                hi = [r[readout]["success"]["ci"][g][1] for r in rows]
                ax.plot(al, y, ls, color=colors[g], marker="o" if readout == "R1" else None, ms=3,
                        label=f"{readout} {g}")
                ax.fill_between(al, lo, hi, color=colors[g], alpha=0.12)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("α")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        if i % cols == 0:
            ax.set_ylabel("success P(over | a)")
        else:
            ax.tick_params(labelleft=False)
    axes[0].legend(fontsize=7, loc="lower right")
    # the flip gap female − male of every method, one panel per readout
    cmap = plt.get_cmap("tab10")
    for j, readout in enumerate(("R1", "R2")):
        ax = fig.add_subplot(grid[rows_n, 2 * j:2 * j + 2])
        for c, name in enumerate(names):
            rows = res["results"][name]
            al = [r["alpha"] for r in rows]
            gap = [r[readout]["flip"]["gap"] for r in rows]
            lo = [r[readout]["flip"]["gap_ci"][0] for r in rows]
            hi = [r[readout]["flip"]["gap_ci"][1] for r in rows]
            style = "-" if name.startswith("EF") else ("-." if name == "oracle α" else ":")
            ax.plot(al, gap, style, color=cmap(c), marker="o", ms=3, lw=2 if name.startswith("EF") else 1.3,
                    label=name)
            ax.fill_between(al, lo, hi, color=cmap(c), alpha=0.10)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(f"{readout} ({'frozen LM head' if readout == 'R1' else 'refitted readout'}): flip-rate gap",
                     fontsize=10)
        ax.set_xlabel("α")
        ax.set_ylabel("P(over | under, female) − P(over | under, male)", fontsize=8)
        ax.grid(alpha=0.3)
        if j == 1:
            ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.suptitle("Steering towards \"over\": per-group success (R1 frozen head, solid; R2 refitted readout, dashed) "
                 "and the flip-rate gap with 95% bootstrap bands", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(res: dict, out: str, verdict: str | None = None) -> None:
    _common.write(out, res, markdown(res, verdict))
    figure(res, out + ".png")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small model, few rows, coarse grid (a smoke run)")
    ap.add_argument("--out", default=os.path.join("benchmarks", "results", STEM))
    ap.add_argument("--cache", default="default", help="model weights cache folder ('' for none)")
    ap.add_argument("--layer", type=int, default=None)
    ap.add_argument("--n-eval", type=int, default=None)
    ap.add_argument("--verdict", default=None, help="a file whose text is written as the verdict section")
    ap.add_argument("--from-json", default=None,
                    help="rewrite the markdown and figure from a results JSON of an earlier run (no computation)")
    args = ap.parse_args(argv)
    verdict = None
    if args.verdict:
        with open(args.verdict) as f:
            verdict = f.read().strip()
    if args.from_json:
        with open(args.from_json) as f:
            res = json.load(f)
        write(res, args.out, verdict)
        print(f"rewrote {args.out}.md/.json/.png from {args.from_json}")
        return res
    cfg = dict(QUICK if args.quick else DEFAULTS)
    if args.layer is not None:
        cfg["layer"] = args.layer
    if args.n_eval is not None:
        cfg["n_eval"] = args.n_eval
    res = run(cfg, td.QUICK if args.quick else td.DEFAULTS, cache=args.cache or None)
    res["quick"] = bool(args.quick)
    write(res, args.out, verdict)
    print(f"wrote {args.out}.md/.json/.png in {res['seconds']['total']:.0f} s")
    return res


if __name__ == "__main__":
    main()
