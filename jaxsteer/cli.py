"""The ``jaxsteer`` command line.

``jaxsteer example`` — a worked example of the core solver: a univariate and a multivariate biased
family, their nearest ideal distributions under every intervention and form, the KL to each, and the
exact fairness of the Bayes rule before and after.
"""

from __future__ import annotations

import argparse
import sys
import time


def _example(args: argparse.Namespace) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np

    import jaxsteer as js
    from jaxsteer import ideal

    print("jaxsteer example: nearest ideal distributions (float64, CPU)\n")
    # Univariate case study: two classes, two groups, group 0 disadvantaged (fewer positives, a
    # noisier and shifted positive class).
    fam1 = js.GaussianFamily.univariate(
        priors=[[0.30, 0.25], [0.10, 0.35]],
        means=[[0.0, 0.0], [1.5, 2.5]],
        stds=[[1.0, 1.0], [1.6, 1.0]],
    )
    cost = jnp.array([[0.0, 1.0], [1.0, 0.0]])
    before = ideal.bayes_rates_1d(fam1, cost)
    rows = [("original", 0.0, float(before["error"]), float(before["dp_gap"]), float(before["eo_gap"]))]
    for intervention in ("affirmative", "all"):
        for form in ("symmetric", "affine"):
            t = time.perf_counter()
            sol = js.nearest_ideal(fam1, intervention=intervention, form=form)
            rates = ideal.bayes_rates_1d(sol.target, cost)
            dt = time.perf_counter() - t
            rows.append((f"{intervention}/{form}", float(sol.kl), float(rates["error"]),
                         float(rates["dp_gap"]), float(rates["eo_gap"])))
            if args.verbose:
                print(f"  solved {intervention}/{form} in {dt:.2f}s, converged={bool(sol.converged)}")
    print("Univariate family (k=2 classes, m=2 groups), exact Bayes-rule analytics, 0-1 cost:")
    print(f"  {'target':<22}{'KL':>10}{'Bayes err':>11}{'ΔDP':>10}{'ΔEO':>10}")
    for name, kl, err, dp, eo in rows:
        print(f"  {name:<22}{kl:>10.4f}{err:>11.4f}{dp:>10.2e}{eo:>10.2e}")

    rng = np.random.default_rng(0)
    k, m, d = 3, 2, 4
    q = rng.uniform(0.5, 1.5, size=(k, m))
    q /= q.sum()
    mu = rng.normal(size=(k, m, d))
    x = rng.normal(size=(k, m, d, d))
    cov = x @ np.swapaxes(x, -1, -2) / d + 0.3 * np.eye(d)
    fam = js.GaussianFamily(priors=q, means=mu, covs=cov)
    print(f"\nRandom family (k={k}, m={m}, d={d}): KL to the nearest ideal family")
    print(f"  {'intervention/form':<22}{'KL':>10}{'features':>10}{'priors':>10}{'resid':>10}{'iters':>7}")
    for intervention in ("affirmative", "all"):
        for form in ("symmetric", "affine"):
            sol = js.nearest_ideal(fam, intervention=intervention, form=form)
            print(f"  {intervention + '/' + form:<22}{float(sol.kl):>10.4f}{float(sol.kl_features):>10.4f}"
                  f"{float(sol.kl_priors):>10.4f}{float(sol.residual):>10.1e}{int(sol.iterations):>7}")
            ok = bool(ideal.is_ideal(sol.target, form=form, atol=1e-6))
            if not ok or not bool(sol.converged):
                print("  !! the target failed its ideal check", file=sys.stderr)
                return 1
    print("\nEvery target passes jaxsteer.is_ideal; see README.md for the API.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="jaxsteer", description="Optimal steering to exact fairness (nearest ideal distributions)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("example", help="solve a univariate and a multivariate example and print the results")
    ex.add_argument("-v", "--verbose", action="store_true", help="print solve times")
    ex.set_defaults(func=_example)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
