"""``jaxsteer demo``: the embedded default study (univariate case study, Adult, COMPAS).

1. **Univariate case study** (two classes, two groups, group 0 disadvantaged): the exact Bayes error,
   ΔDP and ΔEO of the Bayes rule of the original family and of its nearest ideal families, their KL and
   the certificate's ΔEO bound.
2. **Adult (group: sex)** and **COMPAS (group: race)**: the pre-processing protocol of MATH §4 — steer
   the training data, train a logistic regression on it (with the method's sample weights), evaluate
   on the raw test data — for no steering, reweighing, EF affirmative (symmetric, affine) and EF all
   (affine); and the representation protocol (the map applied to training and test data) for mean
   matching, MiMiC and LEACE, as they are used in the literature; and, when fairlearn is installed
   (``pip install 'jaxsteer[study]'``), fairlearn's ``ThresholdOptimizer`` with true-positive-rate
   parity and with equalized odds (post-processing of a scikit-learn logistic regression trained on
   the raw data; it uses the group at prediction time and predicts at random between thresholds,
   ``random_state=0``). fairlearn's ``ExponentiatedGradient`` is left out of the demo for time (about
   35 s on Adult on 2 cores); it is in ``benchmarks/experiments/tabular.py``.

Writes ``report.md``, ``results.json`` and, when matplotlib is installed, ``densities.png`` (class ×
group densities before and after steering) and ``tradeoff.png`` (accuracy against ΔEO per method).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import time

import numpy as np

CASE_STUDY = dict(
    priors=[[0.30, 0.25], [0.10, 0.35]],
    means=[[0.0, 0.0], [1.5, 2.5]],
    stds=[[1.0, 1.0], [1.6, 1.0]],
)
EF_VARIANTS = (("affirmative", "symmetric"), ("affirmative", "affine"), ("all", "affine"))


class Progress:
    def __init__(self, quiet: bool = False):
        self.t0 = time.perf_counter()
        self.quiet = quiet

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(f"[{time.perf_counter() - self.t0:6.1f} s] {msg}", flush=True)


def logistic_regression(X, y, w=None, l2: float = 1.0, iters: int = 30):
    """Weighted L2-regularised logistic regression by Newton's method (JAX); returns a predictor.

    Minimises ``Σ_j w_j log(1 + exp(−s_j (x_jᵀβ + β₀))) + ½ l2 ‖β‖²`` (scikit-learn's convention with
    ``C = 1/l2``; the intercept is not penalised).
    """
    import jax
    import jax.numpy as jnp

    X = jnp.asarray(X)
    n, d = X.shape
    Xb = jnp.concatenate([X, jnp.ones((n, 1), X.dtype)], axis=1)
    yv = jnp.asarray(y, X.dtype)
    wv = jnp.ones(n, X.dtype) if w is None else jnp.asarray(w, X.dtype)
    reg = jnp.diag(jnp.concatenate([jnp.full(d, l2, X.dtype), jnp.zeros(1, X.dtype)]))

    @jax.jit
    def solve(Xb, yv, wv):
        def step(beta, _):
            p = jax.nn.sigmoid(Xb @ beta)
            g = Xb.T @ (wv * (p - yv)) + reg @ beta
            H = (Xb * (wv * p * (1 - p))[:, None]).T @ Xb + reg + 1e-10 * jnp.eye(d + 1, dtype=Xb.dtype)
            return beta - jnp.linalg.solve(H, g), None

        beta, _ = jax.lax.scan(step, jnp.zeros(d + 1, Xb.dtype), None, length=iters)
        return beta

    beta = solve(Xb, yv, wv)
    return lambda Xt: np.asarray((jnp.asarray(Xt) @ beta[:-1] + beta[-1]) > 0).astype(np.int32)


def pca_projection(train, test, k):
    """Project ``train [n, d]`` and ``test [n', d]`` on the top ``k`` principal components of ``train``.

    ``k <= 0`` or ``k >= d`` returns the inputs unchanged.

    Example:
        >>> import numpy as np
        >>> from jaxsteer.demo import pca_projection
        >>> rng = np.random.default_rng(0)
        >>> X_train, X_test = rng.normal(size=(100, 30)), rng.normal(size=(10, 30))
        >>> Ztr, Zte = pca_projection(X_train, X_test, 20)
        >>> Ztr.shape, Zte.shape
        ((100, 20), (10, 20))
    """
    if k <= 0 or k >= train.shape[1]:
        return train, test
    mu = train.mean(0)
    _, _, vt = np.linalg.svd(train - mu, full_matrices=False)
    return (train - mu) @ vt[:k].T, (test - mu) @ vt[:k].T


def univariate_study(progress) -> dict:
    import jaxsteer as js
    from jaxsteer import bayes

    fam = js.GaussianFamily.univariate(**CASE_STUDY)
    cost = np.array([[0.0, 1.0], [1.0, 0.0]])
    rows, targets = [], {}
    r = bayes.bayes_rates_1d(fam, cost)
    rows.append(dict(method="original", error=float(r.error), dp=float(r.dp_gap), eo=float(r.eo_gap), kl=0.0, eo_bound=0.0))
    for inter in ("affirmative", "all"):
        for form in ("symmetric", "affine"):
            # affirmative keeps the advantaged group 1 as it is and moves the disadvantaged group 0
            sol = js.nearest_ideal(fam, intervention=inter, form=form, reference=1)
            rt = bayes.bayes_rates_1d(sol.target, cost)
            cert = js.certificate(sol)
            rows.append(dict(method=f"EF {inter}/{form}", error=float(rt.error), dp=float(rt.dp_gap),
                             eo=float(rt.eo_gap), kl=float(sol.kl), eo_bound=float(cert.eo_bound)))
            targets[f"{inter}/{form}"] = sol.target
    progress("univariate case study: 4 nearest ideal families (closed forms; affirmative keeps group 1)")
    return dict(rows=rows, family=fam, targets=targets)


FAIRLEARN_NOTE = (
    "fairlearn rows skipped: fairlearn (and scikit-learn) are not installed; pip install 'jaxsteer[study]' to "
    "compare with fairlearn's ThresholdOptimizer."
)


def fairlearn_rows(name, Xtr, ytr, atr, Xte, yte, ate, progress, seed: int = 0) -> list[dict] | None:
    """fairlearn's ``ThresholdOptimizer`` (TPR parity, equalized odds) on a logistic regression.

    The classifier is scikit-learn's ``LogisticRegression`` (``C = 1``, the demo's own regulariser)
    trained on the raw training data; the thresholds are fitted on the training data and applied to
    the test data with its groups (randomised between two thresholds, ``random_state=seed``).

    Returns:
        rows in the demo's format (protocol ``"post"``), or ``None`` when fairlearn or scikit-learn
        is not installed.
    """
    try:
        from fairlearn.postprocessing import ThresholdOptimizer
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        return None
    from jaxsteer import metrics

    Xtr, Xte = np.asarray(Xtr), np.asarray(Xte)
    base = LogisticRegression(C=1.0, max_iter=2000).fit(Xtr, ytr)
    rows = []
    for label, cons in (("TPR parity", "true_positive_rate_parity"), ("equalized odds", "equalized_odds")):
        t = time.perf_counter()
        to = ThresholdOptimizer(estimator=base, constraints=cons, prefit=True, predict_method="decision_function")
        to.fit(Xtr, ytr, sensitive_features=atr)
        pred = np.asarray(to.predict(Xte, sensitive_features=ate, random_state=seed)).astype(np.int32)
        t = time.perf_counter() - t
        row = dict(
            dataset=name, method=f"fairlearn ThresholdOptimizer, {label}", protocol="post",
            acc=float(metrics.accuracy(yte, pred)),
            dp=float(metrics.demographic_parity_difference(pred, ate)),
            eo=float(metrics.equal_opportunity_difference(yte, pred, ate)),
            kl=None, eo_bound=None, seconds=t,
        )
        progress(f"{name}: {row['method']:26s} acc {row['acc']:.3f}  ΔDP {row['dp']:.3f}  ΔEO {row['eo']:.3f}  ({t:.1f} s)")
        rows.append(row)
    return rows


def tabular_study(name, data, n_components, progress) -> list[dict]:
    import jaxsteer as js
    from jaxsteer import baselines, metrics

    Xtr, Xte = pca_projection(data.X_train, data.X_test, n_components)
    ytr, atr, yte, ate = data.y_train, data.a_train, data.y_test, data.a_test
    progress(f"{name}: {Xtr.shape[0]} train / {Xte.shape[0]} test rows, d = {Xtr.shape[1]}, groups {list(data.group_names)}")

    def score(method, protocol, Ztr, Zte, w=None, kl=None, bound=None, t=0.0):
        pred = logistic_regression(Ztr, ytr, w)(Zte)
        row = dict(
            dataset=name, method=method, protocol=protocol,
            acc=float(metrics.accuracy(yte, pred)),
            dp=float(metrics.demographic_parity_difference(pred, ate)),
            eo=float(metrics.equal_opportunity_difference(yte, pred, ate)),
            kl=kl, eo_bound=bound, seconds=t,
        )
        progress(f"{name}: {method:26s} acc {row['acc']:.3f}  ΔDP {row['dp']:.3f}  ΔEO {row['eo']:.3f}  ({t:.1f} s)")
        return row

    rows = [score("no steering", "-", Xtr, Xte)]
    t = time.perf_counter()
    rw = baselines.Reweighing().fit(Xtr, ytr, atr)
    rows.append(score("reweighing", "pre", Xtr, Xte, rw.sample_weight(ytr, atr), t=time.perf_counter() - t))
    for label, cls in (("mean matching", baselines.MeanMatching), ("MiMiC", baselines.MiMiC), ("LEACE", baselines.LEACE)):
        t = time.perf_counter()
        b = cls().fit(Xtr, ytr, atr)
        rows.append(score(label, "rep", b.transform(Xtr, atr), b.transform(Xte, ate), t=time.perf_counter() - t))
    fl = fairlearn_rows(name, Xtr, ytr, atr, Xte, yte, ate, progress)
    if fl is None:
        progress(FAIRLEARN_NOTE)
    rows += fl or []
    for inter, form in EF_VARIANTS:
        t = time.perf_counter()
        st = js.Steerer(intervention=inter, form=form).fit(Xtr, ytr, atr)
        Ztr = st.transform(Xtr, atr, ytr)
        cert = js.certificate(st.solution_)
        w = st.sample_weight(ytr, atr)
        rows.append(score(f"EF {inter}/{form}", "pre", Ztr, Xte, w, float(st.solution_.kl),
                          float(cert.eo_bound), time.perf_counter() - t))
        # The label-free group map (default `align`) on training and test data, as in the tabular study.
        t = time.perf_counter()
        rows.append(score(f"EF {inter}/{form} [{st.map}]", "rep", st.transform(Xtr, atr), st.transform(Xte, ate), w,
                          float(st.solution_.kl), float(cert.eo_bound), time.perf_counter() - t))
    return rows


def _fmt(v, spec=".3f"):
    return "" if v is None else format(v, spec)


def markdown(uni_rows, tab_rows) -> str:
    out = ["## Univariate case study (exact, cost 0-1 Bayes rule)", "",
           "| method | Bayes error | ΔDP | ΔEO | KL | ΔEO bound |", "|---|---|---|---|---|---|"]
    for r in uni_rows:
        out.append(f"| {r['method']} | {r['error']:.4f} | {r['dp']:.2e} | {r['eo']:.2e} | {r['kl']:.4f} | {_fmt(r['eo_bound'])} |")
    for ds in dict.fromkeys(r["dataset"] for r in tab_rows):
        out += ["", f"## {ds} (logistic regression, test split)", "",
                "| method | protocol | accuracy | ΔDP | ΔEO | KL | ΔEO bound |", "|---|---|---|---|---|---|---|"]
        for r in (r for r in tab_rows if r["dataset"] == ds):
            out.append(f"| {r['method']} | {r['protocol']} | {r['acc']:.3f} | {r['dp']:.3f} | {r['eo']:.3f} | "
                       f"{_fmt(r['kl'], '.4f')} | {_fmt(r['eo_bound'])} |")
    return "\n".join(out) + "\n"


def _figures(out_dir, uni, tab_rows, progress) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        progress("figures skipped: matplotlib is not installed (pip install 'jaxsteer[plot]')")
        return []
    written = []
    fam, target = uni["family"], uni["targets"]["affirmative/affine"]
    xs = np.linspace(-4, 7, 600)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, f, title in ((axes[0], fam, "original"), (axes[1], target, "nearest ideal (affirmative, affine)")):
        q, mu, sd = np.asarray(f.priors), np.asarray(f.means)[..., 0], np.sqrt(np.asarray(f.covs)[..., 0, 0])
        for i in range(2):
            for g in range(2):
                dens = q[i, g] * np.exp(-0.5 * ((xs - mu[i, g]) / sd[i, g]) ** 2) / (sd[i, g] * np.sqrt(2 * np.pi))
                ax.plot(xs, dens, ls="-" if g == 0 else "--", color=f"C{i}", label=f"Y={i}, A={g}")
        ax.set_title(title)
        ax.set_xlabel("x")
    axes[0].set_ylabel("q[i,a] · density")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(out_dir, "densities.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)
    datasets = list(dict.fromkeys(r["dataset"] for r in tab_rows))
    if datasets:
        # One colour and marker per method (shared by the panels) and one legend: labels placed next
        # to the points overlap where methods land close together.
        methods = list(dict.fromkeys(r["method"] for r in tab_rows))
        cmap = plt.get_cmap("tab20")
        style = {}
        for j, mth in enumerate(methods):
            proto = next(r["protocol"] for r in tab_rows if r["method"] == mth)
            marker = "o" if mth.startswith("EF") else ("^" if proto == "post" else ("D" if proto == "-" else "s"))
            style[mth] = dict(color=cmap(j % 20), marker=marker, s=46, edgecolors="black", linewidths=0.4)
        fig, axes = plt.subplots(1, len(datasets), figsize=(4.6 * len(datasets) + 3.3, 4.2), squeeze=False)
        for ax, ds in zip(axes[0], datasets):
            for r in (r for r in tab_rows if r["dataset"] == ds):
                ax.scatter(r["eo"], r["acc"], label=r["method"], **style[r["method"]])
            ax.set_xlabel("ΔEO (test, lower is fairer)")
            ax.set_ylabel("accuracy (test)")
            ax.set_title(ds)
            ax.grid(alpha=0.3)
        handles = [plt.Line2D([], [], ls="", marker=style[mth]["marker"], color=style[mth]["color"],
                              markeredgecolor="black", markeredgewidth=0.4, markersize=7, label=mth) for mth in methods]
        fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.0, 0.5), fontsize=7.5, frameon=False,
                   title="method (○ EF, □ map, △ post, ◇ none)", title_fontsize=7.5)
        fig.tight_layout(rect=(0.25, 0, 1, 1))
        path = os.path.join(out_dir, "tradeoff.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def run(out_dir: str, *, datasets=("adult", "compas"), n_components: int = 20, quiet: bool = False) -> dict:
    """Run the demo and write its report; returns ``{"univariate": rows, "tabular": rows, "files": [...]}``."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from jaxsteer.datasets import load_adult, load_compas

    progress = Progress(quiet)
    os.makedirs(out_dir, exist_ok=True)
    studies = [("Adult (sex)", lambda: load_adult(group="sex")), ("COMPAS (race)", lambda: load_compas(group="race"))]
    studies = [(name, load) for (name, load), key in zip(studies, ("adult", "compas")) if key in datasets]
    # The three studies are independent and mostly XLA compilation, which is single-threaded: run
    # them side by side (one thread each); results are collected in a fixed order.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1 + len(studies)) as pool:
        uni_job = pool.submit(univariate_study, progress)
        tab_jobs = [pool.submit(lambda n=name, ld=load: tabular_study(n, ld(), n_components, progress))
                    for name, load in studies]
        uni = uni_job.result()
        tab_rows = [row for job in tab_jobs for row in job.result()]
    md = markdown(uni["rows"], tab_rows)
    files = _figures(out_dir, uni, tab_rows, progress)
    with open(os.path.join(out_dir, "report.md"), "w") as fh:
        fh.write("# jaxsteer demo\n\n")
        fh.write(
            "Pre-processing protocol (`pre`): the training data are steered (and weighted), a logistic "
            "regression is trained on them and evaluated on the raw test data. Representation protocol "
            "(`rep`): the map is applied to training and test data. Post-processing (`post`, fairlearn's "
            "ThresholdOptimizer on a scikit-learn logistic regression of the raw data): group-specific, "
            "randomised thresholds, fitted on the training data. ΔEO bound: the Pinsker certificate "
            "for a rule exactly fair on the ideal family (MATH §5). "
            f"Features: one-hot + standardised, top {n_components} principal components of the training data.\n\n"
        )
        if tab_rows and not any(r["protocol"] == "post" for r in tab_rows):
            fh.write(FAIRLEARN_NOTE + "\n\n")
        fh.write(md)
        for f in files:
            fh.write(f"\n![{os.path.basename(f)}]({os.path.basename(f)})\n")
    with open(os.path.join(out_dir, "results.json"), "w") as fh:
        json.dump(dict(univariate=uni["rows"], tabular=tab_rows), fh, indent=1)
    files = [os.path.join(out_dir, "report.md"), os.path.join(out_dir, "results.json")] + files
    progress(f"wrote {', '.join(files)}")
    return dict(univariate=uni["rows"], tabular=tab_rows, files=files, markdown=md)
