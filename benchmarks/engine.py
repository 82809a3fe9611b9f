"""The solver engine's targets (issue 14), side by side in one process: ``python -m benchmarks.engine``.

    python -m benchmarks.engine [--quick] [--only sym16,aff16,d4,embed64,gap64,sharded] [--json FILE]

* ``sym16``: d = 16, affirmative/symmetric, batch 4,096, the default call (``chunk_size="auto"``),
  against scipy L-BFGS and cvxpy/Clarabel per problem on the first problems of the same batch; the
  KL excess of each over the best of the three.
* ``aff16``: d = 16, affirmative/affine, batch 256, the default call, against scipy from the same starts
  (the symmetric optimum and the k = 2 screened eigen-aligned starts, as jaxsteer).
* ``d4``: d = 4, affirmative/symmetric, batch 16,384: the default call and one vmapped batch.
* ``embed64``: the real d = 64 sentence-embedding family of ``tests/data`` (13 classes... see its
  README): ``all``/affine and ``all``/symmetric, one solve each (compile excluded).
* ``gap64``: ``jax.value_and_grad(ideal_gap)`` at ``h [2048, 64]``, warm-started (``max_iter=2``),
  median of repeated calls (as ``benchmarks/experiments/flax_overhead.py``).
* ``sharded``: the ``sym16`` batch over one virtual host device per core, in a fresh interpreter
  (``python -m jaxsteer.bench.chunking --devices N --chunks auto``).

This module stays in the source checkout (it is not part of ``jaxsteer bench``): ``embed64`` reads
``tests/data`` and ``gap64`` runs ``benchmarks/experiments/flax_overhead.py``. It uses the shipped suite's
helpers and side-by-side solvers (:mod:`jaxsteer.bench`).

Run time excludes compilation (every function is compiled ahead of time, then run once).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np  # noqa: E402

import jaxsteer as js  # noqa: E402
from jaxsteer.datasets import make_gaussian_family  # noqa: E402

from jaxsteer.bench import reference_solvers as ref  # noqa: E402
from jaxsteer.bench.suite import compile_and_time, machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _arrays(fam, i):
    return tuple(np.asarray(x[i]) for x in (fam.priors, fam.means, fam.covs))


def _excess(kls: dict) -> dict:
    best = np.min(np.stack(list(kls.values())), axis=0)
    return {name: float(np.max((v - best) / np.maximum(np.abs(best), 1e-300))) for name, v in kls.items()}


def affirmative_batch(d: int, batch: int, form: str, n_ref: int, cvxpy: bool, **opts) -> dict:
    fam = make_gaussian_family(jax.random.PRNGKey(1000 + d), 2, 2, d, batch_shape=(batch,))
    sol, tc, tr, _ = compile_and_time(lambda f: js.nearest_ideal(f, form=form, **opts), fam)
    row = dict(d=d, batch=batch, form=form, options={k: str(v) for k, v in opts.items()}, compile_s=tc,
               run_s=tr, per_s=batch / tr, converged=float(np.mean(np.asarray(sol.converged))),
               newton_mean=float(np.mean(np.asarray(sol.iterations))),
               newton_max=int(np.max(np.asarray(sol.iterations))))
    print(f"  jaxsteer {form} d={d} batch={batch} {opts or 'default'}: {row['per_s']:,.1f} problems/s "
          f"(run {tr:.2f} s, compile {tc:.1f} s), Newton steps mean {row['newton_mean']:.2f} / max "
          f"{row['newton_max']}, converged {row['converged']:.3f}", flush=True)
    if n_ref:
        kls = dict(jaxsteer=np.asarray(sol.kl)[:n_ref])
        sc = [ref.scipy_affirmative(*_arrays(fam, i), form=form) for i in range(n_ref)]
        row["scipy_per_s"] = n_ref / sum(r["seconds"] for r in sc)
        row["scipy_converged"] = float(np.mean([r["converged"] for r in sc]))
        kls["scipy"] = np.asarray([r["kl"] for r in sc])
        print(f"  scipy    {n_ref} problems: {row['scipy_per_s']:,.2f} problems/s "
              f"-> ratio {row['per_s'] / row['scipy_per_s']:.1f}x", flush=True)
        if cvxpy:
            cv = [ref.cvxpy_affirmative(*_arrays(fam, i)) for i in range(n_ref)]
            row["cvxpy_per_s"] = n_ref / sum(r["seconds"] for r in cv)
            kls["cvxpy"] = np.asarray([r["kl"] for r in cv])
            print(f"  cvxpy    {n_ref} problems: {row['cvxpy_per_s']:,.2f} problems/s "
                  f"-> ratio {row['per_s'] / row['cvxpy_per_s']:.0f}x", flush=True)
        row["kl_excess"] = _excess(kls)
        row["ratio_scipy"] = row["per_s"] / row["scipy_per_s"]
        print(f"  KL excess over the best: {row['kl_excess']}", flush=True)
    return row


def embeddings64() -> list[dict]:
    data = np.load(ROOT / "tests" / "data" / "income_minilm_pca64_family.npz")
    fam = js.GaussianFamily(priors=data["priors"], means=data["means"], covs=data["covs"])
    rows = []
    for intervention, form in (("all", "symmetric"), ("all", "affine"), ("affirmative", "symmetric"),
                               ("affirmative", "affine")):
        sol, tc, tr, _ = compile_and_time(lambda f: js.nearest_ideal(f, intervention=intervention, form=form), fam)
        row = dict(k=fam.k, m=fam.m, d=fam.d, intervention=intervention, form=form, run_s=tr, compile_s=tc,
                   kl=float(sol.kl), residual=float(sol.residual), status=js.Status(int(sol.status)).name,
                   newton=int(sol.iterations))
        rows.append(row)
        print(f"  embeddings d={fam.d} {intervention}/{form}: {tr:.2f} s (compile {tc:.1f} s), KL {row['kl']:.6f}, "
              f"residual {row['residual']:.1e}, {row['status']}, {row['newton']} Newton steps", flush=True)
    return rows


def gap64(repeats: int) -> dict:
    from benchmarks.experiments.flax_overhead import gap_cost

    out = gap_cost(64, 2048, repeats)
    return dict(d=64, n=2048, **out)


def sharded(d: int, batch: int, devices: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rows.json")
        cmd = [sys.executable, "-m", "jaxsteer.bench.chunking", "--d", str(d), "--batch", str(batch), "--form",
               "symmetric", "--chunks", "auto", "--devices", str(devices), "--json", path]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        print(proc.stdout, end="", flush=True)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], flush=True)
            return []
        with open(path) as fh:
            return json.load(fh)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small batches (a smoke run)")
    ap.add_argument("--only", default="sym16,aff16,d4,embed64,gap64,sharded")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    only = set(args.only.split(","))
    q = args.quick
    out = dict(machine=machine())
    t0 = time.perf_counter()
    if "sym16" in only:
        print("d = 16, affirmative/symmetric", flush=True)
        out["sym16"] = affirmative_batch(16, 64 if q else 4096, "symmetric", 4 if q else 64, cvxpy=True)
    if "aff16" in only:
        print("d = 16, affirmative/affine", flush=True)
        out["aff16"] = affirmative_batch(16, 16 if q else 256, "affine", 4 if q else 32, cvxpy=False)
    if "d4" in only:
        print("d = 4, affirmative/symmetric", flush=True)
        n = 256 if q else 16384
        out["d4"] = [affirmative_batch(4, n, "symmetric", 0, cvxpy=False),
                     affirmative_batch(4, n, "symmetric", 0, cvxpy=False, chunk_size=None),
                     affirmative_batch(4, n, "symmetric", 0, cvxpy=False, chunk_size=64)]
    if "embed64" in only and not q:
        print("real d = 64 embeddings", flush=True)
        out["embed64"] = embeddings64()
    if "gap64" in only:
        print("ideal_gap + grad, d = 64, warm", flush=True)
        out["gap64"] = gap64(20 if q else 200)
    if "sharded" in only and (os.cpu_count() or 1) > 1:
        print("sharded over virtual host devices", flush=True)
        out["sharded"] = sharded(16, 64 if q else 4096, os.cpu_count())
    out["seconds"] = time.perf_counter() - t0
    out["load_average"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"done in {out['seconds']:.0f} s (load average {out['load_average']})", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
