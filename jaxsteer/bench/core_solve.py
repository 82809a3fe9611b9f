"""Core-solver measurements: KL by intervention/form on a few families, and solve times (CPU, float64).

    python -m jaxsteer.bench.core_solve [--quick] [--out FILE.json]

(in a source checkout also ``python -m benchmarks.core_solve``).

Compile time (``jit(...).lower().compile()``) is reported separately from run time; run time is the
best of ``--repeats`` calls on the compiled function. Results are printed as a markdown table and
written as JSON together with a description of the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np  # noqa: E402

import jaxsteer as js  # noqa: E402
from jaxsteer.datasets import make_gaussian_family  # noqa: E402
from jaxsteer.bench.suite import machine  # noqa: E402  (one machine description for every benchmark)


def timed(fam, repeats, **opts):
    fn = jax.jit(lambda f: js.nearest_ideal(f, **opts))
    t0 = time.perf_counter()
    compiled = fn.lower(fam).compile()
    t_compile = time.perf_counter() - t0
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        sol = compiled(fam)
        jax.block_until_ready(sol.kl)
        best = min(best, time.perf_counter() - t0)
    return sol, t_compile, best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes (seconds, for tests)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default=None)
    ap.add_argument("--only", default=None, help="run only timing cases whose label contains this")
    ap.add_argument("--skip-kl", action="store_true", help="skip the KL table")
    args = ap.parse_args(argv)
    out = dict(machine=machine(), kl=[], timing=[])

    shapes = [(2, 2, 1), (2, 2, 4), (3, 3, 3)] if not args.quick else [(2, 2, 2)]
    if args.skip_kl:
        shapes = []
    print("| family (k, m, d) | affirmative/symmetric | affirmative/affine | all/symmetric | all/affine |")
    print("|---|---|---|---|---|")
    for shape in shapes:
        for seed in range(2 if not args.quick else 1):
            fam = make_gaussian_family(jax.random.PRNGKey(seed), *shape)
            row = {}
            for inter in ("affirmative", "all"):
                for form in ("symmetric", "affine"):
                    sol = js.nearest_ideal(fam, intervention=inter, form=form)
                    row[f"{inter}/{form}"] = (float(sol.kl), bool(sol.converged))
            out["kl"].append(dict(shape=shape, seed=seed, **{k: v[0] for k, v in row.items()},
                                  converged={k: v[1] for k, v in row.items()}))
            cells = " | ".join(f"{v[0]:.4f}{'' if v[1] else ' (nc)'}" for v in row.values())
            print(f"| {shape} seed {seed} | {cells} |")

    cases = [  # (label, k, m, d, batch, intervention, form)
        ("one family d=64", 2, 2, 64, (), "affirmative", "symmetric"),
        ("one family d=64", 2, 2, 64, (), "affirmative", "affine"),
        ("one family d=32", 2, 2, 32, (), "all", "affine"),
        ("1024 families d=16", 2, 2, 16, (1024,), "affirmative", "symmetric"),
        ("1024 families d=16", 2, 2, 16, (1024,), "affirmative", "affine"),
        ("64 families d=16", 2, 2, 16, (64,), "all", "affine"),
    ]
    if args.quick:
        cases = [("one family d=4", 2, 2, 4, (), "affirmative", "symmetric"),
                 ("8 families d=3", 2, 2, 3, (8,), "all", "affine")]
    if args.only:
        cases = [c for c in cases if args.only in c[0]]
    print("\n| case | intervention/form | compile s | run s | per problem ms | converged | max residual |")
    print("|---|---|---|---|---|---|---|")
    for label, k, m, d, batch, inter, form in cases:
        fam = make_gaussian_family(jax.random.PRNGKey(d), k, m, d, batch_shape=batch)
        sol, tc, tr = timed(fam, args.repeats, intervention=inter, form=form)
        n = int(np.prod(batch)) if batch else 1
        conv = float(np.mean(np.asarray(sol.converged)))
        res = float(np.max(np.asarray(sol.residual)))
        out["timing"].append(dict(case=label, k=k, m=m, d=d, batch=n, intervention=inter, form=form,
                                  compile_s=tc, run_s=tr, converged_fraction=conv, max_residual=res))
        print(f"| {label} | {inter}/{form} | {tc:.1f} | {tr:.3f} | {1e3 * tr / n:.2f} | {conv:.3f} | {res:.1e} |",
              flush=True)
    print("\nmachine:", out["machine"])
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
