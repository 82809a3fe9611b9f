"""Real-data study: steering Adult and COMPAS, every method, both protocols (MATH §4), against
fairlearn's mitigators, with the EF variant chosen on validation data (issue 16).

    python -m benchmarks.experiments.tabular [--datasets adult-sex,adult-race,compas-race]
        [--clf lr,mlp] [--pca 20] [--seeds 5] [--val 0.2] [--no-eg] [--out benchmarks/results/tabular]

Per seed ``s`` a validation split (``--val``, default 20%) is carved from the training split,
stratified by ``(y, a)`` and drawn with seed ``s`` (``jaxsteer.datasets.stratified_split``); every
method is fitted on the rest (the *fit* part), and the test split is the loader's (Adult: the official
UCI test file; COMPAS: a fixed 70/30 split). Seeds vary the validation split and the MLP's
initialisation, so both classifiers get mean ± sd over ``--seeds``.

Methods:

* no steering; reweighing (Kamiran–Calders); mean matching, MiMiC, LEACE in both protocols;
* every EF candidate (intervention × form × {``pre``, ``rep`` × label-free map}), fitted and scored by
  :func:`jaxsteer.select` on the validation split, and reported on the test split;
* **EF selected (validation)**: the candidate :func:`jaxsteer.select` chooses with its default
  criterion (lowest validation ΔEO among candidates within 0.01 validation accuracy of the unsteered
  model, else the most accurate), evaluated on the test split; its choices are recorded per seed;
* fairlearn 0.15: ``ThresholdOptimizer`` (on the classifier trained on raw data, thresholds fitted on
  the fit part, randomised predictions with ``random_state=s``; it uses the group at prediction time)
  and ``ExponentiatedGradient`` (``eps=0.01``, ``max_iter=50``; randomised predictions), each with
  true-positive-rate parity and equalized odds; ``--no-eg`` leaves ExponentiatedGradient out;
* **EF selected + ThresholdOptimizer** (steering plus post-processing): the thresholds fitted on the
  scores of the classifier of the validation-selected EF candidate, on the data that classifier sees
  (raw data for ``pre``, mapped data for ``rep``).

Protocols:

* ``pre`` (pre-processing, the paper's "bias in, bias out" use): steer the *training* data (subgroup
  maps for the EF methods, the group map for the baselines), weight it (EF prior weights, reweighing),
  train a classifier, evaluate it on the *raw* test data;
* ``rep`` (representation): apply a label-free map to training *and* test data (EF ``align``,
  ``moment``, ``posterior``; mean matching, MiMiC, LEACE), train and evaluate on the mapped data.

Features: the loaders' one-hot + standardised matrices, projected on the top principal components of
the fit part (``--pca``, default 20; COMPAS has 9 features and is not projected). Metrics on the test
split: accuracy, ΔDP (demographic parity difference), ΔEO (equal-opportunity difference, TPR gap of
class 1) and the equalized-odds difference, as fairlearn defines them. Logistic regression is
scikit-learn's; the MLP is a small JAX/optax network (one hidden layer of 64, weighted cross-entropy,
400 full-batch Adam steps, float32), wrapped as a scikit-learn estimator so that fairlearn can use it.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from sklearn.base import BaseEstimator, ClassifierMixin  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from benchmarks.experiments._common import mean_sd  # noqa: E402
import jaxsteer as js  # noqa: E402
from jaxsteer import baselines, metrics  # noqa: E402
from jaxsteer.datasets import load_adult, load_compas  # noqa: E402
from jaxsteer.datasets._tabular import stratified_split  # noqa: E402
from jaxsteer.demo import pca_projection as pca  # noqa: E402

DATASETS = {
    "adult-sex": lambda g: load_adult(group="sex", include_group=g),
    "adult-race": lambda g: load_adult(group="race", include_group=g),
    "compas-race": lambda g: load_compas(group="race", include_group=g),
}
TOLERANCE = 0.01  # jaxsteer.select's default criterion: within 0.01 validation accuracy of no steering


# -- classifiers ------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("steps",))
def _train_mlp(params, X, y, w, lr, steps):
    opt = optax.adam(lr)

    def loss(p):
        z = _mlp_logits(p, X)
        return jnp.mean(w * optax.sigmoid_binary_cross_entropy(z, y)) + 1e-4 * jnp.sum(p["W1"] ** 2)

    def step(carry, _):
        p, s = carry
        g = jax.grad(loss)(p)
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    (p, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    return p


def _mlp_logits(p, X):
    return jax.nn.relu(X @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]


_mlp_logits_jit = jax.jit(_mlp_logits)


class MLP(ClassifierMixin, BaseEstimator):
    """One hidden layer of ``hidden`` ReLUs, weighted cross-entropy, ``steps`` full-batch Adam steps.

    A scikit-learn estimator (``fit(X, y, sample_weight)``, ``predict``, ``decision_function``) so that
    ``jaxsteer.select`` and fairlearn's mitigators can clone and train it. Binary 0/1 labels; float32.
    """

    def __init__(self, seed=0, hidden=64, steps=400, lr=3e-3):
        self.seed, self.hidden, self.steps, self.lr = seed, hidden, steps, lr

    def fit(self, X, y, sample_weight=None):
        X = jnp.asarray(np.asarray(X, np.float32))
        yv = jnp.asarray(np.asarray(y, np.float32))
        w = np.ones(len(yv)) if sample_weight is None else np.asarray(sample_weight, np.float64)
        w = jnp.asarray((w / w.mean()).astype(np.float32))
        d = X.shape[1]
        k1, k2 = jax.random.split(jax.random.PRNGKey(self.seed))
        params = {
            "W1": (jax.random.normal(k1, (d, self.hidden)) * np.sqrt(2.0 / d)).astype(jnp.float32),
            "b1": jnp.zeros(self.hidden, jnp.float32),
            "W2": (jax.random.normal(k2, (self.hidden,)) * np.sqrt(1.0 / self.hidden)).astype(jnp.float32),
            "b2": jnp.zeros((), jnp.float32),
        }
        self.params_ = _train_mlp(params, X, yv, w, jnp.float32(self.lr), self.steps)
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, X):
        return np.asarray(_mlp_logits_jit(self.params_, jnp.asarray(np.asarray(X, np.float32))), np.float64)

    def predict(self, X):
        return (self.decision_function(X) > 0).astype(int)


def make_classifier(name, seed):
    if name == "lr":
        return LogisticRegression(max_iter=2000, C=1.0)
    if name == "mlp":
        return MLP(seed=seed)
    raise ValueError(f"classifier: unknown {name!r}")


CLASSIFIERS = ("lr", "mlp")


def fairlearn_rows(clf_name, seed, Xf, yf, af, Xte, ate, base_clf, eg=True):
    """fairlearn's ThresholdOptimizer (on ``base_clf``, prefit) and ExponentiatedGradient: test predictions."""
    from fairlearn.postprocessing import ThresholdOptimizer
    from fairlearn.reductions import EqualizedOdds, ExponentiatedGradient, TruePositiveRateParity

    out = []
    for label, cons in (("TPR parity", "true_positive_rate_parity"), ("equalized odds", "equalized_odds")):
        t0 = time.perf_counter()
        to = ThresholdOptimizer(estimator=base_clf, constraints=cons, prefit=True, predict_method="decision_function")
        to.fit(Xf, yf, sensitive_features=af)
        out.append((f"fairlearn ThresholdOptimizer, {label}", "post", to.predict(Xte, sensitive_features=ate, random_state=seed),
                    time.perf_counter() - t0))
    if eg:
        for label, cons in (("TPR parity", TruePositiveRateParity), ("equalized odds", EqualizedOdds)):
            t0 = time.perf_counter()
            m = ExponentiatedGradient(make_classifier(clf_name, seed), cons(), eps=0.01, max_iter=50)
            m.fit(Xf, yf, sensitive_features=af)
            out.append((f"fairlearn ExponentiatedGradient, {label}", "in", m.predict(Xte, random_state=seed),
                        time.perf_counter() - t0))
    return out


# -- methods ----------------------------------------------------------------------------------------

BASELINES = [("none", "pre", None), ("reweighing", "pre", baselines.Reweighing)]
for _name, _cls in (("mean matching", baselines.MeanMatching), ("MiMiC", baselines.MiMiC), ("LEACE", baselines.LEACE)):
    BASELINES += [(_name, "pre", _cls), (_name, "rep", _cls)]


def ef_name(c):
    """The study's row name of a jaxsteer.select candidate (as in the earlier runs)."""
    return f"EF {c.intervention}/{c.form}" + ("" if c.map is None else f" [{c.map}]")


def evaluate(y, pred, a):
    pred = np.asarray(pred).astype(int)
    return dict(
        acc=float(metrics.accuracy(y, pred)),
        dp=float(metrics.demographic_parity_difference(pred, a)),
        eo=float(metrics.equal_opportunity_difference(y, pred, a)),
        eodds=float(metrics.equalized_odds_difference(y, pred, a)),
    )


def run_dataset(name, clfs, n_pca, seeds, log, include_group=False, val=0.2, eg=True):
    data = DATASETS[name](include_group)
    X0, y0, a0 = np.asarray(data.X_train), np.asarray(data.y_train), np.asarray(data.a_train)
    Xte0, yte, ate = np.asarray(data.X_test), np.asarray(data.y_test), np.asarray(data.a_test)
    log(f"\n== {name}: train {X0.shape} (minus {val:.0%} validation), test {Xte0.shape}, groups {data.group_names}")
    runs = collections.defaultdict(list)  # (method, protocol, clf) -> [per-seed dict]
    for s in range(seeds):
        fit_idx, val_idx = stratified_split(y0, a0, val, s, "val")
        Xf, Xte = pca(X0[fit_idx], Xte0, n_pca)
        _, Xv = pca(X0[fit_idx], X0[val_idx], n_pca)
        yf, af, yv, av = y0[fit_idx], a0[fit_idx], y0[val_idx], a0[val_idx]
        # label-free baselines: fitted once per seed, shared by the classifiers
        prepared = []
        for mname, protocol, cls in BASELINES:
            t0 = time.perf_counter()
            if cls is None:
                prepared.append((mname, protocol, Xf, Xte, None, 0.0))
                continue
            b = cls().fit(Xf, yf, af)
            w = b.sample_weight(yf, af)
            if isinstance(b, baselines.Reweighing):
                Ztr, Zte = Xf, Xte
            else:
                Ztr = np.asarray(b.transform(Xf, af))
                Zte = np.asarray(b.transform(Xte, ate)) if protocol == "rep" else Xte
            prepared.append((mname, protocol, Ztr, Zte, w, time.perf_counter() - t0))
        sel = None
        for clf in clfs:
            def add(method, protocol, pred, secs, **extra):
                r = dict(seed=s, seconds=secs, **evaluate(yte, pred, ate), **extra)
                runs[(method, protocol, clf)].append(r)
                log(f"  s{s} {method:48s} {protocol:4s} {clf:3s}  acc {r['acc']:.3f}  ΔDP {r['dp']:.3f}  ΔEO {r['eo']:.3f}  "
                    f"EOdds {r['eodds']:.3f}  ({secs:.1f} s)" + (f"  {extra['choice']}" if "choice" in extra else ""))

            base_clf = None
            for mname, protocol, Ztr, Zte, w, ts in prepared:
                t0 = time.perf_counter()
                c = make_classifier(clf, s).fit(Ztr, yf, sample_weight=w)
                add(mname, protocol, c.predict(Zte), ts + time.perf_counter() - t0)
                if mname == "none":
                    base_clf = c
            t0 = time.perf_counter()
            sel = js.select(Xf, yf, af, X_val=Xv, y_val=yv, a_val=av, classifier=make_classifier(clf, s),
                            tolerance=TOLERANCE, reuse=sel)
            t_sel = time.perf_counter() - t0
            for row in sel.table[1:]:
                cand = js.Candidate(row["intervention"], row["form"], row["map"], row["protocol"])
                add(ef_name(cand), cand.protocol, sel.predict(Xte, ate, cand), row["fit_s"] + row["clf_s"],
                    kl=row["kl"], converged=row["converged"], val_acc=row["acc"], val_eo=row["eo"])
            ch = sel.choice
            add("EF selected (validation)", "val", sel.predict(Xte, ate), t_sel, choice=f"{ef_name(ch)}, {ch.protocol}",
                val_acc=sel.row()["acc"], val_eo=sel.row()["eo"], val_ref_acc=sel.reference["acc"], val_ref_eo=sel.reference["eo"])
            for method, protocol, pred, secs in fairlearn_rows(clf, s, Xf, yf, af, Xte, ate, base_clf, eg=eg):
                add(method, protocol, pred, secs)
            # steering plus post-processing: thresholds on the selected EF candidate's classifier
            from fairlearn.postprocessing import ThresholdOptimizer

            st, cclf = sel.steerer, sel.classifier
            Zf = Xf if ch.protocol == "pre" else np.asarray(st.transform(Xf, af))
            Zt = Xte if ch.protocol == "pre" else np.asarray(st.transform(Xte, ate))
            for label, cons in (("TPR parity", "true_positive_rate_parity"), ("equalized odds", "equalized_odds")):
                t0 = time.perf_counter()
                to = ThresholdOptimizer(estimator=cclf, constraints=cons, prefit=True, predict_method="decision_function")
                to.fit(Zf, yf, sensitive_features=af)
                add(f"EF selected + ThresholdOptimizer, {label}", "post", to.predict(Zt, sensitive_features=ate, random_state=s),
                    time.perf_counter() - t0, choice=f"{ef_name(ch)}, {ch.protocol}")
    rows = []
    for (method, protocol, clf), rs in runs.items():
        agg = _aggregate(rs)
        kl = [r["kl"] for r in rs if r.get("kl") is not None]
        rows.append(dict(dataset=name, method=method, protocol=protocol, clf=clf, n_runs=len(rs),
                         kl=float(np.mean(kl)) if kl else None, seconds=float(np.mean([r["seconds"] for r in rs])),
                         per_seed=rs, **agg))
    return rows


def _mean_sd(values) -> tuple[float, float]:
    """(mean, sd) of :func:`_common.mean_sd`: this study's tables keep the pair."""
    stat = mean_sd(values)
    return stat["mean"], stat["sd"]


def _aggregate(per_seed) -> dict:
    return {k: _mean_sd([r[k] for r in per_seed]) for k in ("acc", "dp", "eo", "eodds")}


def _cell(r, key="eo"):
    (ma, sa), (me, se) = r["acc"], r[key]
    return f"{ma:.3f} ± {sa:.3f} / {me:.3f} ± {se:.3f}"


def _dominates(b, e, key="eo"):
    """Row ``b`` dominates row ``e`` in mean test accuracy and mean ``key`` (one of them strictly)."""
    return b["acc"][0] >= e["acc"][0] and b[key][0] <= e[key][0] and (b["acc"][0] > e["acc"][0] or b[key][0] < e[key][0])


def _choices(r):
    return ", ".join(f"{c} ×{k}" for c, k in collections.Counter(x["choice"] for x in r["per_seed"]).most_common())


def reselect(sub, tol):
    """The validation choice with another tolerance, recomputed per seed from the stored validation
    metrics (the same rule as ``jaxsteer.select``); returns (test acc, test ΔEO) mean ± sd and the choices."""
    sel = sub[("EF selected (validation)", "val")]
    cands = [(m, p, r) for (m, p), r in sub.items() if m.startswith("EF ") and p in ("pre", "rep")]
    accs, eos, picks = [], [], []
    for k, srow in enumerate(sel["per_seed"]):
        seed_rows = [(m, p, next(x for x in r["per_seed"] if x["seed"] == srow["seed"])) for m, p, r in cands]
        pool = [t for t in seed_rows if t[2]["val_acc"] >= srow["val_ref_acc"] - tol]
        if pool:
            m, p, x = min(pool, key=lambda t: (t[2]["val_eo"], -t[2]["val_acc"]))
        else:
            m, p, x = max(seed_rows, key=lambda t: (t[2]["val_acc"], -t[2]["val_eo"]))
        accs.append(x["acc"])
        eos.append(x["eo"])
        picks.append(f"{m}, {p}")
    return dict(acc=_mean_sd(accs), eo=_mean_sd(eos),
                choices=", ".join(f"{c} ×{k}" for c, k in collections.Counter(picks).most_common()))


def summary(rows):
    """Per data set × classifier: the validation-selected EF row against no steering, the oracle EF
    choice on test, fairlearn's mitigators and the other baselines (means ± sd over seeds)."""
    out = {}
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        for clf in dict.fromkeys(r["clf"] for r in rows):
            sub = {(r["method"], r["protocol"]): r for r in rows if r["dataset"] == ds and r["clf"] == clf}
            if not sub:
                continue
            none = sub[("none", "pre")]
            sel = sub[("EF selected (validation)", "val")]
            cands = [r for (m, p), r in sub.items() if m.startswith("EF ") and p in ("pre", "rep")]
            within = [r for r in cands if r["acc"][0] >= none["acc"][0] - TOLERANCE]
            oracle = min(within, key=lambda r: (r["eo"][0], -r["acc"][0])) if within else max(cands, key=lambda r: r["acc"][0])
            lowest = min(cands, key=lambda r: (r["eo"][0], -r["acc"][0]))
            others = [r for (m, p), r in sub.items() if not m.startswith("EF ")]
            out[(ds, clf)] = dict(
                none=none, selected=sel, choices=_choices(sel), oracle=oracle, lowest=lowest,
                fairlearn={m: r for (m, p), r in sub.items() if m.startswith("fairlearn")},
                steer_to={m: r for (m, p), r in sub.items() if m.startswith("EF selected + ")},
                dominating=[r for r in others if _dominates(r, sel)],
                sensitivity={t: reselect(sub, t) for t in (0.0, 0.02, float("inf"))},
            )
            check = reselect(sub, TOLERANCE)  # the recomputed rule must reproduce jaxsteer.select's choices
            if abs(check["acc"][0] - sel["acc"][0]) > 1e-12 or abs(check["eo"][0] - sel["eo"][0]) > 1e-12:
                print(f"WARNING {ds}, {clf}: the recomputed validation rule disagrees with jaxsteer.select "
                      f"({check['choices']} against {_choices(sel)})")
    return out


def summary_markdown(rows):
    summ = summary(rows)
    lines = [
        "\n## Summary: test accuracy / ΔEO, mean ± sd over seeds\n",
        f"EF selected: `jaxsteer.select`'s default criterion on the validation split (lowest validation ΔEO among the 16 "
        f"EF candidates within {TOLERANCE} validation accuracy of no steering, else the most accurate). Oracle: the same "
        "criterion applied to the *test* means (selection on the test set, shown only for reference); lowest ΔEO: the "
        "EF candidate with the lowest mean test ΔEO (what the earlier table reported).\n",
        "| data, classifier | no steering | EF selected (validation) | oracle EF (test) | lowest-ΔEO EF (test) |",
        "|---|---|---|---|---|",
    ]
    for (ds, clf), s in summ.items():
        lines.append(f"| {ds}, {clf} | {_cell(s['none'])} | **{_cell(s['selected'])}** | {s['oracle']['method']} "
                     f"({s['oracle']['protocol']}): {_cell(s['oracle'])} | {s['lowest']['method']} ({s['lowest']['protocol']}): "
                     f"{_cell(s['lowest'])} |")
    lines += ["\nValidation choices per seed:\n"]
    for (ds, clf), s in summ.items():
        lines.append(f"- {ds}, {clf}: {s['choices']}")
    lines += ["\nThe same validation rule with other tolerances (recomputed from the stored validation metrics; "
              "tolerance inf = lowest validation ΔEO whatever the accuracy):\n",
              "| data, classifier | tolerance 0 | tolerance 0.01 (default) | tolerance 0.02 | tolerance inf |", "|---|---|---|---|---|"]
    for (ds, clf), s in summ.items():
        sens = s["sensitivity"]
        lines.append(f"| {ds}, {clf} | {_cell(sens[0.0])} | {_cell(s['selected'])} | {_cell(sens[0.02])} | {_cell(sens[float('inf')])} |")
    fl = list(dict.fromkeys(m for s in summ.values() for m in s["fairlearn"]))
    lines += ["\n### fairlearn's mitigators against the validation-selected EF variant\n",
              "| data, classifier | EF selected | " + " | ".join(m.replace("fairlearn ", "") for m in fl) + " |",
              "|---|---|" + "---|" * len(fl)]
    for (ds, clf), s in summ.items():
        cells = [(("**" + _cell(s["fairlearn"][m]) + "**") if _dominates(s["fairlearn"][m], s["selected"]) else _cell(s["fairlearn"][m]))
                 if m in s["fairlearn"] else "" for m in fl]
        lines.append(f"| {ds}, {clf} | {_cell(s['selected'])} | " + " | ".join(cells) + " |")
    lines += ["\nBold: dominates EF selected (mean test accuracy at least as high and mean ΔEO at least as low).\n",
              "Every method (fairlearn's included) that dominates the validation-selected EF variant in mean test accuracy and ΔEO:\n"]
    for (ds, clf), s in summ.items():
        dom = "; ".join(f"{r['method']} ({r['protocol']}) {_cell(r)}" for r in s["dominating"]) or "none"
        lines.append(f"- {ds}, {clf}: {dom}")
    lines += ["\n### Steering plus post-processing: ThresholdOptimizer on the validation-selected EF variant's classifier\n",
              "| data, classifier | constraint | thresholds alone: acc / ΔEO / EOdds | EF selected + thresholds | steering + thresholds dominates (ΔEO; EOdds) |",
              "|---|---|---|---|---|"]
    for (ds, clf), s in summ.items():
        for label in ("TPR parity", "equalized odds"):
            alone = s["fairlearn"].get(f"fairlearn ThresholdOptimizer, {label}")
            both = s["steer_to"].get(f"EF selected + ThresholdOptimizer, {label}")
            if alone is None or both is None:
                continue

            def c3(r):
                return f"{r['acc'][0]:.3f} / {r['eo'][0]:.3f} / {r['eodds'][0]:.3f}"

            verdict = "; ".join(
                "yes" if _dominates(both, alone, k) else ("dominated" if _dominates(alone, both, k) else "neither")
                for k in ("eo", "eodds"))
            lines.append(f"| {ds}, {clf} | {label} | {c3(alone)} | {c3(both)} | {verdict} |")
    return "\n".join(lines) + "\n"


def to_markdown(rows):
    lines = [summary_markdown(rows), "\n## Every method (test split, mean ± sd over seeds)\n"]
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        for clf in dict.fromkeys(r["clf"] for r in rows):
            sub = [r for r in rows if r["dataset"] == ds and r["clf"] == clf]
            if not sub:
                continue
            lines += [f"\n### {ds}, {clf}\n", "| method | protocol | accuracy | ΔDP | ΔEO | EOdds | KL | seconds |",
                      "|---|---|---|---|---|---|---|---|"]
            for r in sub:
                def f(key):
                    m, s = r[key]
                    return f"{m:.3f}" if r["n_runs"] == 1 else f"{m:.3f} ± {s:.3f}"

                kl = "" if r["kl"] is None else f"{r['kl']:.4f}"
                lines.append(f"| {r['method']} | {r['protocol']} | {f('acc')} | {f('dp')} | {f('eo')} | {f('eodds')} | {kl} | "
                             f"{r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


_STYLE = {  # method prefix -> (colour, marker, size, label)
    "none": ("k", "*", 13, "no steering"),
    "reweighing": ("tab:gray", "P", 7, "reweighing"),
    "mean matching": ("tab:brown", "v", 7, "mean matching (pre/rep)"),
    "MiMiC": ("tab:purple", "^", 7, "MiMiC (pre/rep)"),
    "LEACE": ("tab:pink", "D", 6, "LEACE (pre/rep)"),
    "fairlearn ThresholdOptimizer, TPR parity": ("tab:green", "<", 8, "ThresholdOptimizer, TPR parity"),
    "fairlearn ThresholdOptimizer, equalized odds": ("tab:olive", ">", 8, "ThresholdOptimizer, equalized odds"),
    "fairlearn ExponentiatedGradient, TPR parity": ("tab:orange", "s", 7, "ExponentiatedGradient, TPR parity"),
    "fairlearn ExponentiatedGradient, equalized odds": ("gold", "s", 7, "ExponentiatedGradient, equalized odds"),
    "EF selected + ThresholdOptimizer, TPR parity": ("tab:cyan", "<", 8, "EF selected + ThresholdOptimizer, TPR parity"),
    "EF selected + ThresholdOptimizer, equalized odds": ("tab:cyan", ">", 8, "EF selected + ThresholdOptimizer, eq. odds"),
    "EF selected (validation)": ("tab:blue", "o", 12, "EF selected on validation"),
    "EF ": ("lightsteelblue", ".", 7, "other EF candidates"),
}


def _style(method):
    for prefix, st in _STYLE.items():
        if method == prefix or (prefix.endswith(" ") and method.startswith(prefix)) or method.startswith(prefix + " "):
            return st
    return ("tab:red", "x", 6, method)


def _panel(ax, rows, title):
    for r in sorted(rows, key=lambda r: r["method"] != "EF selected (validation)" and r["method"].startswith("EF "), reverse=True):
        color, marker, size, _ = _style(r["method"])
        (mx, sx), (my, sy) = r["eo"], r["acc"]
        ax.errorbar(mx, my, xerr=sx, yerr=sy, fmt=marker, color=color, ms=size, lw=0.8,
                    mec="k" if r["method"] == "EF selected (validation)" else color, zorder=3 if not r["method"].startswith("EF ") else 2)
    ax.set_xlabel("ΔEO, test (TPR gap; lower is fairer)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    accs = [r["acc"][0] for r in rows if r["acc"][0] > 0.6 * max(r["acc"][0] for r in rows)]
    lo = min(accs)
    ax.set_ylim(lo - 0.01, max(accs) + 0.01)


def plot(rows, path):
    """Accuracy against ΔEO on the test split, mean ± sd over seeds: one PNG per data set (LR and MLP
    panels) at ``<path stem>_<dataset>.png``, and all of them in ``path``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
    except ImportError:
        print("matplotlib not installed: no figure (pip install 'jaxsteer[study]')")
        return None
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    clfs = list(dict.fromkeys(r["clf"] for r in rows))
    present = list(dict.fromkeys(_style(r["method"])[3] for r in rows))
    handles = [Line2D([], [], color=c, marker=m, ls="", ms=min(s, 9), label=lab, mec="k" if lab.startswith("EF selected on") else c)
               for c, m, s, lab in dict.fromkeys(_style(r["method"]) for r in rows) if lab in present]
    written = []
    stem = path[:-4] if path.endswith(".png") else path
    for ds in datasets:
        fig, axes = plt.subplots(1, len(clfs), figsize=(6.2 * len(clfs), 5), squeeze=False)
        for ax, clf in zip(axes[0], clfs):
            _panel(ax, [r for r in rows if r["dataset"] == ds and r["clf"] == clf], f"{ds}, {clf.upper()}")
        fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
        fig.suptitle(f"{ds}: accuracy against ΔEO on the test split (mean ± sd over seeds; low-accuracy outliers cut)", fontsize=11)
        fig.tight_layout(rect=(0, 0.13, 1, 0.96))
        p = f"{stem}_{ds}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)
    fig, axes = plt.subplots(len(clfs), len(datasets), figsize=(5.4 * len(datasets), 4.4 * len(clfs)), squeeze=False)
    for j, ds in enumerate(datasets):
        for i, clf in enumerate(clfs):
            _panel(axes[i, j], [r for r in rows if r["dataset"] == ds and r["clf"] == clf], f"{ds}, {clf.upper()}")
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle("Accuracy against ΔEO on the test split (mean ± sd over seeds)")
    fig.tight_layout(rect=(0, 0.1, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path] + written


def write(rows, meta, out):
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out + ".json", "w") as fh:
        json.dump(dict(meta=meta, rows=rows), fh, indent=1)
    with open(out + ".md", "w") as fh:
        fh.write(f"# Real-data study\n\n`{meta['command']}` ({meta['seconds']:.0f} s, {meta['cores']} cores, "
                 f"{meta['machine']}, jax {meta['jax']}, fairlearn {meta.get('fairlearn')}, "
                 f"{meta['seeds']} seeds, validation {meta.get('val')} of the training split"
                 + ("" if meta.get("complete", True) else "; PARTIAL: " + ", ".join(meta.get("done", []))) + ").\n")
        fh.write(to_markdown(rows))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="adult-sex,adult-race,compas-race")
    p.add_argument("--clf", default="lr,mlp")
    p.add_argument("--pca", type=int, default=20, help="principal components (0: all features)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--val", type=float, default=0.2, help="validation fraction carved from the training split")
    p.add_argument("--no-eg", action="store_true", help="leave fairlearn's ExponentiatedGradient out (slow with the MLP)")
    p.add_argument("--include-group", action="store_true", help="keep the sensitive attribute as a feature")
    p.add_argument("--out", default="benchmarks/results/tabular")
    p.add_argument("--replot", action="store_true", help="only rewrite OUT.md and the figures from an existing OUT.json")
    args = p.parse_args(argv)
    if args.replot:
        with open(args.out + ".json") as fh:
            saved = json.load(fh)
        for r in saved["rows"]:  # the summary statistics again from the per-seed values
            r.update(_aggregate(r["per_seed"]))
        write(saved["rows"], saved["meta"], args.out)
        print("wrote", args.out + ".md", plot(saved["rows"], args.out + ".png"))
        return
    names = [s.strip() for s in args.datasets.split(",") if s.strip()]
    clfs = [s.strip() for s in args.clf.split(",") if s.strip()]
    for n in names:
        if n not in DATASETS:
            p.error(f"--datasets: unknown {n!r}; choose from {sorted(DATASETS)}")
    for c in clfs:
        if c not in CLASSIFIERS:
            p.error(f"--clf: unknown {c!r}; choose from {sorted(CLASSIFIERS)}")
    if not 0 < args.val < 1:
        p.error(f"--val: expected a fraction in (0, 1), got {args.val}")
    import fairlearn

    t0 = time.perf_counter()
    rows = []
    meta = dict(
        command="python -m benchmarks.experiments.tabular " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        pca=args.pca, include_group=args.include_group, seeds=args.seeds, val=args.val, eg=not args.no_eg,
        jax=jax.__version__, fairlearn=fairlearn.__version__,
        machine=platform.processor() or platform.machine(), cores=os.cpu_count(), done=[],
    )
    for n in names:
        rows += run_dataset(n, clfs, args.pca, args.seeds, lambda s: print(s, flush=True), args.include_group,
                            val=args.val, eg=not args.no_eg)
        meta["done"].append(n)
        meta.update(seconds=time.perf_counter() - t0, complete=len(meta["done"]) == len(names))
        write(rows, meta, args.out)  # after every data set, so that a long run keeps what it has
    figs = plot(rows, args.out + ".png")
    print(f"\nwrote {args.out}.json, {args.out}.md" + (f", {figs}" if figs else "") + f" ({meta['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
