"""Real-data study: steering Adult and COMPAS, every method, both protocols (MATH §4).

    python -m benchmarks.experiments.tabular [--datasets adult-sex,adult-race,compas-race]
        [--clf lr,mlp] [--pca 20] [--seeds 5] [--out benchmarks/results/tabular]

Protocols:

* ``pre`` (pre-processing, the paper's "bias in, bias out" use): steer the *training* data (subgroup
  maps for the EF methods, the group map for the baselines), weight it (EF prior weights, reweighing),
  train a classifier, evaluate it on the *raw* test data;
* ``rep`` (representation): apply a label-free map to training *and* test data (EF ``align``,
  ``moment``, ``posterior``; mean matching, MiMiC, LEACE), train and evaluate on the mapped data.

Features: the loaders' one-hot + standardised matrices, optionally projected on the top principal
components of the training data (``--pca``, default 20, as in MATH §4: the affine form's dense solver
is the bottleneck above a few dozen dimensions). Metrics on the test split: accuracy, ΔDP
(demographic parity difference), ΔEO (equal-opportunity difference, TPR gap of class 1) and the
equalized-odds difference, as fairlearn defines them. Logistic regression is scikit-learn's
(deterministic); the MLP is a small JAX/optax network (one hidden layer of 64, weighted cross-entropy,
Adam), so its seeds matter: mean ± sd over ``--seeds``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import jaxsteer as js  # noqa: E402
from jaxsteer import baselines, metrics  # noqa: E402
from jaxsteer.datasets import load_adult, load_compas  # noqa: E402
from jaxsteer.demo import pca_projection as pca  # noqa: E402

DATASETS = {
    "adult-sex": lambda g: load_adult(group="sex", include_group=g),
    "adult-race": lambda g: load_adult(group="race", include_group=g),
    "compas-race": lambda g: load_compas(group="race", include_group=g),
}


# -- classifiers ------------------------------------------------------------------------------------


def fit_lr(X, y, w, seed):
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=2000, C=1.0)
    clf.fit(X, y, sample_weight=w)
    return clf.predict


def fit_mlp(X, y, w, seed, hidden=64, steps=400, lr=3e-3):
    X = jnp.asarray(X)
    y = jnp.asarray(y)
    w = jnp.ones(len(y)) if w is None else jnp.asarray(w)
    w = w / w.mean()
    d = X.shape[1]
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    params = {
        "W1": jax.random.normal(k1, (d, hidden)) * jnp.sqrt(2.0 / d),
        "b1": jnp.zeros(hidden),
        "W2": jax.random.normal(k2, (hidden,)) * jnp.sqrt(1.0 / hidden),
        "b2": jnp.zeros(()),
    }

    def logits(p, X):
        return jax.nn.relu(X @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]

    def loss(p):
        z = logits(p, X)
        return jnp.mean(w * optax.sigmoid_binary_cross_entropy(z, y)) + 1e-4 * jnp.sum(p["W1"] ** 2)

    opt = optax.adam(lr)

    @jax.jit
    def train(p):
        def step(carry, _):
            p, s = carry
            g = jax.grad(loss)(p)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        (p, _), _ = jax.lax.scan(step, (p, opt.init(p)), None, length=steps)
        return p

    params = train(params)
    return lambda Xt: np.asarray(logits(params, jnp.asarray(Xt)) > 0).astype(int)


CLASSIFIERS = {"lr": fit_lr, "mlp": fit_mlp}


# -- methods ----------------------------------------------------------------------------------------


def methods():
    """(name, protocol, build) where build() returns an unfitted steerer-like object."""
    out = [("none", "pre", None), ("reweighing", "pre", baselines.Reweighing)]
    for name, cls in (("mean matching", baselines.MeanMatching), ("MiMiC", baselines.MiMiC), ("LEACE", baselines.LEACE)):
        out.append((name, "pre", cls))
        out.append((name, "rep", cls))
    for inter in ("affirmative", "all"):
        for form in ("symmetric", "affine"):
            out.append((f"EF {inter}/{form}", "pre", (inter, form, None)))
            for kind in js.maps.MAP_KINDS:
                out.append((f"EF {inter}/{form} [{kind}]", "rep", (inter, form, kind)))
    return out


def evaluate(y, pred, a):
    return dict(
        acc=float(metrics.accuracy(y, pred)),
        dp=float(metrics.demographic_parity_difference(pred, a)),
        eo=float(metrics.equal_opportunity_difference(y, pred, a)),
        eodds=float(metrics.equalized_odds_difference(y, pred, a)),
    )


def run_dataset(name, clfs, n_pca, seeds, log, include_group=False):
    data = DATASETS[name](include_group)
    Xtr, Xte = pca(data.X_train, data.X_test, n_pca)
    ytr, atr, yte, ate = data.y_train, data.a_train, data.y_test, data.a_test
    log(f"\n== {name}: train {Xtr.shape}, test {Xte.shape}, groups {data.group_names}")
    rows = []
    fitted_ef = {}
    for mname, protocol, build in methods():
        t0 = time.perf_counter()
        kl = None
        w = None
        if build is None:
            Ztr, Zte = Xtr, Xte
        elif isinstance(build, tuple):
            inter, form, kind = build
            key = (inter, form)
            if key not in fitted_ef:
                st = js.Steerer(intervention=inter, form=form, map="moment")
                st.fit(Xtr, ytr, atr)
                fitted_ef[key] = st
            st = fitted_ef[key]
            kl = float(st.solution_.kl)
            w = st.sample_weight(ytr, atr)
            if kind is None:
                Ztr, Zte = st.transform(Xtr, atr, ytr), Xte
            else:
                gm = js.maps.group_maps(st.family_, st.solution_, kind)
                Ztr, Zte = np.asarray(gm.apply(Xtr, atr)), np.asarray(gm.apply(Xte, ate))
        else:
            b = build().fit(Xtr, ytr, atr)
            w = b.sample_weight(ytr, atr)
            if isinstance(b, baselines.Reweighing):
                Ztr, Zte = Xtr, Xte
            else:
                Ztr = b.transform(Xtr, atr)
                Zte = b.transform(Xte, ate) if protocol == "rep" else Xte
        t_steer = time.perf_counter() - t0
        for clf in clfs:
            res = []
            for s in range(seeds if clf != "lr" else 1):
                pred = np.asarray(CLASSIFIERS[clf](Ztr, ytr, w, s)(Zte))
                res.append(evaluate(yte, pred, ate))
            agg = {k: (float(np.mean([r[k] for r in res])), float(np.std([r[k] for r in res]))) for k in res[0]}
            rows.append(dict(dataset=name, method=mname, protocol=protocol, clf=clf, kl=kl, steer_s=t_steer, n_runs=len(res), **agg))
            log(
                f"  {mname:32s} {protocol:3s} {clf:3s}  acc {agg['acc'][0]:.3f}  ΔDP {agg['dp'][0]:.3f}  "
                f"ΔEO {agg['eo'][0]:.3f}  EOdds {agg['eodds'][0]:.3f}" + (f"  KL {kl:.4f}" if kl is not None else "")
            )
    return rows


def to_markdown(rows):
    lines = []
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        for clf in dict.fromkeys(r["clf"] for r in rows):
            sub = [r for r in rows if r["dataset"] == ds and r["clf"] == clf]
            if not sub:
                continue
            lines += [f"\n### {ds}, {clf}\n", "| method | protocol | accuracy | ΔDP | ΔEO | EOdds | KL |", "|---|---|---|---|---|---|---|"]
            for r in sub:
                def f(key):
                    m, s = r[key]
                    return f"{m:.3f}" if r["n_runs"] == 1 else f"{m:.3f} ± {s:.3f}"

                kl = "" if r["kl"] is None else f"{r['kl']:.4f}"
                lines.append(f"| {r['method']} | {r['protocol']} | {f('acc')} | {f('dp')} | {f('eo')} | {f('eodds')} | {kl} |")
    return "\n".join(lines) + "\n"


def plot(rows, path):
    """Pareto figure: test accuracy against ΔEO (and ΔDP), one panel per dataset, mean ± sd."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no figure (pip install 'jaxsteer[plot]')")
        return None
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(2, len(datasets), figsize=(max(5.2 * len(datasets), 12), 8.5), squeeze=False)
    families = {"none": ("k", "*"), "reweighing": ("tab:gray", "P"), "mean matching": ("tab:brown", "v"),
                "MiMiC": ("tab:purple", "^"), "LEACE": ("tab:pink", "D")}
    ef_colors = {"EF affirmative/symmetric": "tab:blue", "EF affirmative/affine": "tab:cyan",
                 "EF all/symmetric": "tab:red", "EF all/affine": "tab:orange"}
    for j, ds in enumerate(datasets):
        for i, (metric, label) in enumerate((("eo", "ΔEO (TPR gap)"), ("dp", "ΔDP"))):
            ax = axes[i, j]
            for r in (r for r in rows if r["dataset"] == ds):
                base = r["method"].split(" [")[0]
                color, marker = families.get(base, (ef_colors.get(base, "tab:green"), "o"))
                if base.startswith("EF"):
                    marker = "o" if r["protocol"] == "pre" else {"align": "s", "moment": "d", "posterior": "h"}.get(
                        r["method"].split("[")[-1].rstrip("]"), "o")
                fill = color if r["clf"] == "lr" else "none"
                (mx, sx), (my, sy) = r[metric], r["acc"]
                ax.errorbar(mx, my, xerr=sx, yerr=sy, fmt=marker, mfc=fill, mec=color, ecolor=color, ms=7,
                            alpha=0.85 if r["protocol"] == "pre" else 0.6, lw=0.8)
            ax.set_xlabel(label + " (lower is fairer)")
            ax.set_ylabel("test accuracy")
            ax.set_title(f"{ds}" + (" — filled: LR, open: MLP" if i == 0 else ""), fontsize=10)
            ax.grid(alpha=0.3)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, marker=m, ls="", label=n) for n, (c, m) in families.items()]
    handles += [Line2D([], [], color=c, marker="o", ls="", label=n) for n, c in ef_colors.items()]
    handles += [Line2D([], [], color="gray", marker=m, ls="", mfc="none", label=f"EF rep [{k}]")
                for k, m in (("align", "s"), ("moment", "d"), ("posterior", "h"))]
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=8, frameon=False)
    fig.suptitle("Accuracy against fairness on the test split (EF circles: pre-processing protocol)")
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="adult-sex,adult-race,compas-race")
    p.add_argument("--clf", default="lr,mlp")
    p.add_argument("--pca", type=int, default=20, help="principal components (0: all features)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--include-group", action="store_true", help="keep the sensitive attribute as a feature")
    p.add_argument("--out", default="benchmarks/results/tabular")
    p.add_argument("--replot", action="store_true", help="only redraw OUT.png from an existing OUT.json")
    args = p.parse_args(argv)
    if args.replot:
        with open(args.out + ".json") as fh:
            print("wrote", plot(json.load(fh)["rows"], args.out + ".png"))
        return
    names = [s.strip() for s in args.datasets.split(",") if s.strip()]
    clfs = [s.strip() for s in args.clf.split(",") if s.strip()]
    for n in names:
        if n not in DATASETS:
            p.error(f"--datasets: unknown {n!r}; choose from {sorted(DATASETS)}")
    for c in clfs:
        if c not in CLASSIFIERS:
            p.error(f"--clf: unknown {c!r}; choose from {sorted(CLASSIFIERS)}")
    t0 = time.perf_counter()
    rows = []
    for n in names:
        rows += run_dataset(n, clfs, args.pca, args.seeds, lambda s: print(s, flush=True), args.include_group)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    meta = dict(
        command="python -m benchmarks.experiments.tabular " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        pca=args.pca,
        include_group=args.include_group,
        seeds=args.seeds,
        jax=jax.__version__,
        machine=platform.processor() or platform.machine(),
        cores=os.cpu_count(),
        seconds=time.perf_counter() - t0,
    )
    with open(args.out + ".json", "w") as fh:
        json.dump(dict(meta=meta, rows=rows), fh, indent=1)
    with open(args.out + ".md", "w") as fh:
        fh.write(f"# Real-data study\n\n`{meta['command']}` ({meta['seconds']:.0f} s, {meta['cores']} cores, jax {meta['jax']}).\n")
        fh.write(to_markdown(rows))
    fig = plot(rows, args.out + ".png")
    print(f"\nwrote {args.out}.json, {args.out}.md" + (f", {fig}" if fig else "") + f" ({meta['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
