"""The performance suite: throughput, batch layouts, large problems, compile vs run, roofline.

    jaxsteer bench [run] [--quick] [--out DIR] [--only throughput,batching,large,compile,roofline]

(in a source checkout also ``python -m benchmarks run ...``, which writes to ``benchmarks/results``).
Writes ``results_{quick,full}.json`` (with the machine description), ``results_{quick,full}.md`` and
PNG plots to ``DIR`` (default ``./jaxsteer-bench``) and prints the markdown tables.

The side-by-side solvers need the ``bench`` extra (``pip install 'jaxsteer[bench]'``): scipy for the
L-BFGS comparisons (throughput, large), cvxpy and Clarabel for the convex program (throughput). When
one that the chosen sections need is missing, the command prints one line naming the extra and exits
with status 2 before any work. matplotlib (same extra) only draws the plots: without it the plots are
skipped with a one-line note.

* throughput: problems/s of ``nearest_ideal`` against batch size, every intervention × form; scipy
  L-BFGS (analytic gradients, same starts) and cvxpy/Clarabel (symmetric affirmative, convex) per
  problem on the first few problems of the same batch, in the same process. Ratios use jaxsteer's
  largest batch. Accuracy: the largest relative KL excess over the best of the three on the problems
  solved by all.
* batching: the same batch as one vmapped batch, in ``chunk_size`` chunks, and sharded over all
  devices (on CPU: one virtual host device per core), each in a fresh interpreter.
* large: one family, d ∈ {128, 384, 768}, k = 28, m = 2, affirmative/symmetric: time to the same
  relative residual (1e-10), jaxsteer vs scipy L-BFGS (scipy capped in wall-clock time; where it stops
  on its own above 1e-10, "stalled", jaxsteer is also timed to the residual scipy reached).
* compile: ``jax.jit(f).lower(x).compile()`` time separately from run time, and a second call with
  new data of the same shape (no recompilation: the compiled executable is reused).
* roofline: achieved float64 FLOP/s of the large solves (flops counted from the kernel's Newton and
  CG iteration counts) against the measured float64 / float32 matrix-multiply rate.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time

import jax
import numpy as np

import jaxsteer as js
from jaxsteer.bench import reference_solvers as ref
from jaxsteer.datasets import make_gaussian_family

VARIANTS = [("affirmative", "symmetric"), ("affirmative", "affine"), ("all", "symmetric"), ("all", "affine")]


def machine() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    dev = jax.devices()[0]
    return dict(cpu=cpu, cores=os.cpu_count(), platform=dev.platform, device_kind=str(dev.device_kind),
                devices=len(jax.devices()), jax=jax.__version__, jaxlib=jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
                numpy=np.__version__, python=platform.python_version(), float64=True)


def compile_and_time(fn, *args, repeats=1):
    """``(result, compile seconds, best run seconds)``; ``fn`` is jitted and compiled ahead of time."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    t_compile = time.perf_counter() - t0
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - t0)
    return out, t_compile, best, compiled


def _arrays(fam, i):
    return tuple(np.asarray(x[i]) for x in (fam.priors, fam.means, fam.covs))


# ----------------------------------------------------------------------------------------------
# throughput


def throughput(cfg) -> list[dict]:
    rows = []
    for (k, m, d), batches, variants, n_ref in cfg:
        for inter, form in variants:
            fam = make_gaussian_family(jax.random.PRNGKey(1000 + d), k, m, d, batch_shape=(max(batches),))
            row = dict(k=k, m=m, d=d, intervention=inter, form=form, jaxsteer=[])
            sols = None
            for n in batches:
                sub = fam[:n]
                sol, tc, tr, _ = compile_and_time(
                    lambda f, inter=inter, form=form: js.nearest_ideal(f, intervention=inter, form=form), sub)
                row["jaxsteer"].append(dict(batch=n, compile_s=tc, run_s=tr, per_s=n / tr,
                                            converged=float(np.mean(np.asarray(sol.converged)))))
                sols = sol
                print(f"  jaxsteer {inter}/{form} k={k} m={m} d={d} batch={n}: {n / tr:,.1f} problems/s "
                      f"(compile {tc:.1f}s)", flush=True)
            nr = min(n_ref, max(batches))
            kl_j = np.asarray(sols.kl)[:nr]
            kls = dict(jaxsteer=kl_j)
            if inter == "affirmative":
                sc = [ref.scipy_affirmative(*_arrays(fam, i), form=form) for i in range(nr)]
                row["scipy"] = dict(n=nr, per_s=nr / sum(r["seconds"] for r in sc),
                                    converged=float(np.mean([r["converged"] for r in sc])),
                                    max_residual=max(r["residual"] for r in sc))
                kls["scipy"] = np.asarray([r["kl"] for r in sc])
                print(f"  scipy    {nr} problems: {row['scipy']['per_s']:,.2f} problems/s", flush=True)
                if form == "symmetric":
                    cv = [ref.cvxpy_affirmative(*_arrays(fam, i)) for i in range(nr)]
                    row["cvxpy"] = dict(n=nr, per_s=nr / sum(r["seconds"] for r in cv),
                                        converged=float(np.mean([r["converged"] for r in cv])))
                    kls["cvxpy"] = np.asarray([r["kl"] for r in cv])
                    print(f"  cvxpy    {nr} problems: {row['cvxpy']['per_s']:,.2f} problems/s", flush=True)
            best = np.min(np.stack(list(kls.values())), axis=0)
            row["kl_excess"] = {name: float(np.max((v - best) / np.maximum(np.abs(best), 1e-300)))
                                for name, v in kls.items()}
            top = row["jaxsteer"][-1]["per_s"]
            row["ratio"] = {name: top / row[name]["per_s"] for name in ("scipy", "cvxpy") if name in row}
            rows.append(row)
    return rows


def batching(cases, devices: int) -> list[dict]:
    """Batch layouts at one batch size per case: one vmapped batch, ``chunk_size`` chunks, and (when
    ``devices > 1``) the batch sharded over ``devices`` devices (on CPU: virtual host devices, one per
    core). Each layout runs in a fresh interpreter (``python -m jaxsteer.bench.chunking``), because
    the host device count is fixed when jax's CPU backend starts."""
    import subprocess
    import tempfile

    rows = []
    for (k, m, d), batch, (inter, form), chunks in cases:
        for ndev in sorted({1, devices}):
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, "rows.json")
                cmd = [sys.executable, "-m", "jaxsteer.bench.chunking", "--k", str(k), "--m", str(m), "--d", str(d),
                       "--batch", str(batch), "--intervention", inter, "--form", form,
                       "--chunks", ",".join(str(c) for c in chunks), "--devices", str(ndev), "--json", out]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                print(proc.stdout, end="", flush=True)
                if proc.returncode != 0:
                    print(f"  batching {inter}/{form} d={d} devices={ndev} failed:\n{proc.stderr[-2000:]}", flush=True)
                    continue
                with open(out) as fh:
                    rows += json.load(fh)
    return rows


# ----------------------------------------------------------------------------------------------
# large problems and roofline


def _kernel(q, mu, S):
    """The moving group's Newton–CG solve of one affirmative/symmetric family, with CG counts."""
    from jaxsteer.solve import _common, _group, affirmative

    sg = _common.subgroups(mu, S)
    tpl, _, _ = _common.template_from_group(sg, 0, 0)
    w = affirmative.target_priors(q, 0)
    prob = _common.group_problem(tpl, sg, 1, w[:, 1], True)
    B0 = _common.symmetric_start(prob, sg.S[0, 1])
    res = _group.newton(prob, B0, tol=1e-10, max_iter=100, method="cg")
    return res, res.cg_iterations


def kernel_flops(k, d, newton, cg):
    """Flop model of the matrix-free group solve (:class:`jaxsteer.solve._group.KroneckerGroup`): per CG iteration ``(4k + 12) d³``
    (stacked ``Σ P_i V G_i``, log-det term, preconditioner); per Newton step ``(4k + 40) d³``
    (gradient, inverse, two generalised eigendecompositions, line-search factorisations)."""
    return float(cg * (4 * k + 12) * d ** 3 + (newton + 1) * (4 * k + 40) * d ** 3)


def matmul_rate(n: int, dtype) -> float:
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype)
    f = jax.jit(lambda x, y: x @ y).lower(a, a).compile()
    jax.block_until_ready(f(a, a))
    best = np.inf
    for _ in range(5):
        t0 = time.perf_counter()
        jax.block_until_ready(f(a, a))
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best


def large(dims, k, scipy_cap) -> list[dict]:
    rows = []
    for d in dims:
        fam = make_gaussian_family(jax.random.PRNGKey(d), k, 2, d)
        sol, tc, tr, _ = compile_and_time(lambda f: js.nearest_ideal(f), fam)
        arr = (fam.priors, fam.means, fam.covs)
        (kres, cg), tkc, tk, _ = compile_and_time(_kernel, *arr)
        flops = kernel_flops(k, d, int(kres.iterations), int(cg))
        row = dict(d=d, k=k, m=2, compile_s=tc, run_s=tr, kl=float(sol.kl), residual=float(sol.residual),
                   converged=bool(sol.converged), newton=int(kres.iterations), cg=int(cg),
                   kernel_s=tk, kernel_flops=flops, kernel_gflops=flops / tk / 1e9)
        print(f"  jaxsteer d={d}: {tr:.2f}s (compile {tc:.1f}s), {row['newton']} Newton / {row['cg']} CG, "
              f"kernel {row['kernel_gflops']:.1f} GFLOP/s", flush=True)
        if scipy_cap > 0:
            sc = ref.scipy_affirmative(*(np.asarray(x) for x in arr), form="symmetric", time_cap=scipy_cap)
            row["scipy"] = sc
            row["scipy_capped"] = bool(not sc["converged"] and sc["seconds"] >= scipy_cap)
            row["ratio"] = sc["seconds"] / tr
            row["kl_excess_scipy"] = (sc["kl"] - row["kl"]) / abs(row["kl"])
            print(f"  scipy    d={d}: {sc['seconds']:.2f}s, {sc['iterations']} iterations, residual "
                  f"{sc['residual']:.1e} ({'reached' if sc['converged'] else 'NOT reached'} 1e-10)", flush=True)
            if not sc["converged"] and np.isfinite(sc["residual"]):
                # The same tolerance for both: jaxsteer stopped at the residual scipy reached.
                tol_sc = float(sc["residual"])
                sol_sc, _, t_sc, _ = compile_and_time(lambda f: js.nearest_ideal(f, tol=tol_sc), fam)
                row.update(run_s_scipy_tol=t_sc, residual_scipy_tol=float(sol_sc.residual),
                           ratio_same_tol=sc["seconds"] / t_sc)
                print(f"  jaxsteer d={d} to scipy's residual {tol_sc:.1e}: {t_sc:.2f}s "
                      f"(residual {float(sol_sc.residual):.1e}), {row['ratio_same_tol']:.1f}x scipy", flush=True)
        rows.append(row)
    return rows


def compile_vs_run(d, batch, forms=("symmetric", "affine"), affine_batch=64) -> dict:
    """Compile and run times of one batch per form. The affine form runs a smaller batch
    (``affine_batch``): its vmapped batch steps in lock-step behind the slowest of several starts
    (measured: 170 s per run at d = 16, batch 1,024, and this section runs each executable 4 times)."""
    out = {}
    for form in forms:
        n = batch if form == "symmetric" else min(batch, affine_batch)
        fam = make_gaussian_family(jax.random.PRNGKey(1), 2, 2, d, batch_shape=(n,))
        fam2 = make_gaussian_family(jax.random.PRNGKey(2), 2, 2, d, batch_shape=(n,))
        fn = jax.jit(lambda f, form=form: js.nearest_ideal(f, form=form))
        t0 = time.perf_counter()
        compiled = fn.lower(fam).compile()
        tc = time.perf_counter() - t0
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(fam))
        t1 = time.perf_counter() - t0
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(fam2))  # new data, same shapes: the executable is reused
        t2 = time.perf_counter() - t0
        # The plain jitted function must not recompile on the second call either.
        jax.block_until_ready(fn(fam))
        n_before = fn._cache_size()
        jax.block_until_ready(fn(fam2))
        out[form] = dict(d=d, batch=n, compile_s=tc, first_run_s=t1, second_run_s=t2,
                         recompiled=fn._cache_size() != n_before)
        print(f"  compile {form} d={d} batch={n}: compile {tc:.2f}s, run {t1:.3f}s / {t2:.3f}s", flush=True)
    return out


# ----------------------------------------------------------------------------------------------
# report


def _fmt(x, nd=3):
    return "—" if x is None else (f"{x:,.{nd}g}" if isinstance(x, float) else str(x))


def markdown(res) -> str:
    mc = res["machine"]
    lines = [f"# Benchmark results ({'quick' if res['quick'] else 'full'} run)", "",
             f"Machine: {mc['cpu']}, {mc['cores']} cores, {mc['platform']} ({mc['device_kind']}, "
             f"{mc['devices']} device(s)), jax {mc['jax']}, Python {mc['python']}, float64.", ""]
    if res.get("roofline"):
        r = res["roofline"]
        lines += [f"Matrix multiply ({r['n']}²): float64 {r['f64_gflops']:.1f} GFLOP/s, "
                  f"float32 {r['f32_gflops']:.1f} GFLOP/s.", ""]
    if res.get("throughput"):
        lines += ["## Throughput (problems/s; ratios at jaxsteer's largest batch)", "",
                  "| k, m, d | intervention/form | batch → problems/s (compile s) | scipy /s | cvxpy /s | × scipy | × cvxpy | KL excess jaxsteer / scipy / cvxpy | converged |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in res["throughput"]:
            jx = "; ".join(f"{j['batch']}: {j['per_s']:,.1f} ({j['compile_s']:.1f})" for j in r["jaxsteer"])
            ex = " / ".join(_fmt(r["kl_excess"].get(n), 2) for n in ("jaxsteer", "scipy", "cvxpy"))
            lines.append(
                f"| {r['k']}, {r['m']}, {r['d']} | {r['intervention']}/{r['form']} | {jx} | "
                f"{_fmt(r.get('scipy', {}).get('per_s'))} | {_fmt(r.get('cvxpy', {}).get('per_s'))} | "
                f"{_fmt(r['ratio'].get('scipy'))} | {_fmt(r['ratio'].get('cvxpy'))} | {ex} | "
                f"{r['jaxsteer'][-1]['converged']:.3f} |")
        lines.append("")
    if res.get("batching"):
        scipy_rate = {(r["k"], r["m"], r["d"], r["intervention"], r["form"]): r["scipy"]["per_s"]
                      for r in res.get("throughput", []) if "scipy" in r}
        lines += ["## Batch layouts (the same batch vmapped, in `chunk_size` chunks, sharded over devices)", "",
                  "On a CPU-only machine the devices are virtual host devices, one per core; scipy runs one "
                  "problem at a time in one process (one core), so the per-core ratio divides by the devices.", "",
                  "| k, m, d | intervention/form | batch | devices | chunk_size → problems/s | best | × scipy | × scipy per core | converged | max ΔKL across layouts |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        groups = {}
        for r in res["batching"]:
            groups.setdefault((r["k"], r["m"], r["d"], r["intervention"], r["form"], r["batch"], r["devices"]), []).append(r)
        for (k, m, d, inter, form, batch, ndev), rs in groups.items():
            best = max(rs, key=lambda r: r["per_s"])
            sc = scipy_rate.get((k, m, d, inter, form))
            lay = "; ".join(f"{r['chunk_size'] or 'vmap'}: {r['per_s']:,.1f}" for r in rs)
            lines.append(
                f"| {k}, {m}, {d} | {inter}/{form} | {batch:,} | {ndev} | {lay} | {best['per_s']:,.1f} "
                f"(chunk {best['chunk_size'] or 'vmap'}) | {_fmt(best['per_s'] / sc if sc else None)} | "
                f"{_fmt(best['per_s'] / sc / ndev if sc else None)} | {min(r['converged'] for r in rs):.3f} | "
                f"{max(r['max_abs_dkl'] for r in rs):.1e} |")
        lines.append("")
    if res.get("large"):
        lines += ["## Large problems (one family, k = 28, m = 2, affirmative/symmetric, tol 1e-10)", "",
                  "| d | jaxsteer s (compile s) | Newton / CG its | residual | kernel GFLOP/s | % f64 matmul | scipy s | scipy its | scipy residual | × scipy | jaxsteer s to scipy's residual | × scipy, same tolerance | scipy KL excess |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        f64 = res.get("roofline", {}).get("f64_gflops")
        for r in res["large"]:
            sc = r.get("scipy", {})
            pct = f"{100 * r['kernel_gflops'] / f64:.0f}%" if f64 else "—"
            ratio = r.get("ratio")
            if ratio is None:
                ratio_s = "—"
            elif sc.get("converged"):
                ratio_s = f"{ratio:.1f}"
            elif r.get("scipy_capped", True):  # older result files had no flag: all were "capped"
                ratio_s = f"> {ratio:.1f} (scipy capped)"
            else:  # L-BFGS stopped on its own (line search failure) above 1e-10
                ratio_s = f"{ratio:.1f} (scipy stalled)"
            lines.append(
                f"| {r['d']} | {r['run_s']:.2f} ({r['compile_s']:.1f}) | {r['newton']} / {r['cg']} | "
                f"{r['residual']:.1e} | {r['kernel_gflops']:.1f} | {pct} | {_fmt(sc.get('seconds'))} | "
                f"{_fmt(sc.get('iterations'))} | {_fmt(sc.get('residual'), 2)} | {ratio_s} | "
                f"{_fmt(r.get('run_s_scipy_tol'))} | {_fmt(r.get('ratio_same_tol'))} | "
                f"{_fmt(r.get('kl_excess_scipy'), 2)} |")
        lines.append("")
    if res.get("compile"):
        lines += ["## Compile vs run", "", "| form | d | batch | compile s | first run s | second run s (new data) | recompiled |",
                  "|---|---|---|---|---|---|---|"]
        for form, r in res["compile"].items():
            lines.append(f"| {form} | {r['d']} | {r['batch']} | {r['compile_s']:.2f} | {r['first_run_s']:.3f} | "
                         f"{r['second_run_s']:.3f} | {r['recompiled']} |")
        lines.append("")
    return "\n".join(lines)


def plots(res, out_dir) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib not installed: plots skipped ({EXTRA})")
        return []
    files = []
    if res.get("throughput"):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for r in res["throughput"]:
            b = [j["batch"] for j in r["jaxsteer"]]
            ax.plot(b, [j["per_s"] for j in r["jaxsteer"]], marker="o",
                    label=f"d={r['d']} k={r['k']} m={r['m']} {r['intervention']}/{r['form']}")
            if "scipy" in r:
                ax.axhline(r["scipy"]["per_s"], ls=":", lw=0.8, color=ax.lines[-1].get_color())
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="problems / s",
               title="jaxsteer throughput (dotted: scipy L-BFGS per problem)")
        ax.legend(fontsize=5, ncol=2)
        fig.tight_layout()
        path = os.path.join(out_dir, "throughput.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        files.append(path)
    if res.get("large"):
        fig, ax = plt.subplots(figsize=(5, 4))
        d = [r["d"] for r in res["large"]]
        ax.plot(d, [r["run_s"] for r in res["large"]], marker="o", label="jaxsteer (Newton–CG)")
        sc = [r.get("scipy", {}).get("seconds") for r in res["large"]]
        if any(s is not None for s in sc):
            ax.plot(d, sc, marker="s", label="scipy L-BFGS (capped)")
        ax.set(xscale="log", yscale="log", xlabel="d", ylabel="seconds to residual 1e-10",
               title="k = 28, m = 2, affirmative/symmetric")
        ax.legend()
        fig.tight_layout()
        path = os.path.join(out_dir, "large.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        files.append(path)
    return files


# ----------------------------------------------------------------------------------------------


def config(quick: bool, smoke: bool):
    """Sizes of every section. ``compile`` is ``(d, batch, forms)``; ``large`` is ``(dims, k, scipy
    wall-clock cap in s)``; ``throughput`` rows are ``((k, m, d), batches, variants, problems solved by the
    side-by-side solvers)``."""
    if smoke:  # for tests: seconds, exercises every code path
        return dict(throughput=[((2, 2, 2), [1, 2], VARIANTS[:1], 1)], large=([8], 3, 10.0),
                    compile=(3, 2, ("symmetric",)), roofline=128,
                    batching=[((2, 2, 2), 3, VARIANTS[0], [0, 2])])
    if quick:
        # About 35 s on 2 cores, most of it XLA compiles (about 5 s per shape and variant; 20-30 s
        # for the `all` intervention, which quick leaves out): one variant (affirmative/symmetric) at one
        # batch size against scipy and cvxpy, and one large problem. The batch layouts (one fresh
        # interpreter per layout, about 10 s each) and the compile check (two compiles per form) run only
        # when asked for (--only); see QUICK_SECTIONS.
        return dict(
            throughput=[((2, 2, 8), [256], VARIANTS[:1], 4)],
            large=([32], 28, 20.0), compile=(8, 64, ("symmetric",)), roofline=512,
            batching=[((2, 2, 16), 256, VARIANTS[0], [0, 8])])
    # Full run, sized for an idle 2-core CPU (about 15 minutes): batches up to 16,384 at d ≤ 4 and
    # 4,096 at d = 16 for the symmetric affirmative form. The affine form and the `all` intervention
    # run at smaller batches: a vmapped batch steps in lock-step until its slowest problem has
    # converged, and these variants have stragglers (multi-start, alternations), so their
    # throughput falls with the batch size (see README).
    af = VARIANTS[:2]
    return dict(
        throughput=[((2, 2, 1), [1, 64, 1024, 4096, 16384], VARIANTS, 16),
                    ((2, 2, 4), [1, 64, 1024, 4096, 16384], af, 16),
                    ((2, 2, 4), [1, 64], VARIANTS[2:], 4),
                    ((2, 2, 16), [1, 64, 1024, 4096], VARIANTS[:1], 8),
                    ((2, 2, 16), [1, 64], VARIANTS[1:2], 4),
                    ((2, 2, 16), [1], VARIANTS[2:], 2),
                    ((2, 2, 64), [1], af, 2),
                    ((5, 3, 4), [1, 64], VARIANTS, 4)],
        large=([128, 384, 768], 28, 150.0), compile=(16, 1024, ("symmetric", "affine")), roofline=2048,
        # Batch layouts at the throughput section's largest batches (vmapped, chunked, sharded).
        batching=[((2, 2, 16), 4096, VARIANTS[0], [0, 1, 8, 64]),
                  ((2, 2, 16), 256, VARIANTS[1], [0, 1, 8]),
                  ((2, 2, 4), 16384, VARIANTS[0], [0, 1, 64, 1024]),
                  ((5, 3, 4), 64, VARIANTS[2], [0, 1, 8])])


EXTRA = "pip install 'jaxsteer[bench]'"


class MissingExtra(RuntimeError):
    """Modules of the ``bench`` extra that the chosen sections need are not installed."""


def required_modules(sections, cfg) -> list[str]:
    """The optional modules the chosen sections call: scipy (L-BFGS, throughput of the affirmative
    intervention and the large section), cvxpy with Clarabel (throughput of affirmative/symmetric)."""
    need = []
    if "throughput" in sections:
        variants = {v for _, _, vs, _ in cfg["throughput"] for v in vs}
        if any(inter == "affirmative" for inter, _ in variants):
            need.append("scipy")
        if ("affirmative", "symmetric") in variants:
            need += ["cvxpy", "clarabel"]
    if "large" in sections and cfg["large"][2] > 0 and "scipy" not in need:
        need.append("scipy")
    return need


def check_modules(sections, cfg) -> None:
    missing = [name for name in required_modules(sections, cfg) if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtra(f"the side-by-side solvers need {', '.join(missing)}, not installed: {EXTRA}")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``PROG: error: ...``, exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


SECTIONS = ("throughput", "batching", "large", "compile", "roofline")
QUICK_SECTIONS = ("throughput", "large", "roofline")  # what --quick runs without --only


def main(argv=None, *, prog: str = "jaxsteer bench", default_out: str = "jaxsteer-bench") -> int:
    """Run the suite on ``argv`` (default ``sys.argv[1:]``); returns the exit status. ``prog`` names
    the command in help and errors; ``default_out`` is the results folder when ``--out`` is not given."""
    ap = _Parser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", nargs="?", choices=["run"], default="run",
                    help="optional; 'run' is the only command")
    ap.add_argument("--quick", action="store_true", help="small sizes, about 35 s on 2 cores")
    ap.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # tiny, for the tests
    ap.add_argument("--out", default=default_out, help=f"results folder (default {default_out})")
    ap.add_argument("--only", default=None,
                    help=f"comma-separated sections to run, of {','.join(SECTIONS)} (default all; with "
                         f"--quick {','.join(QUICK_SECTIONS)})")
    ap.add_argument("--variants", default=None,
                    help="comma-separated intervention/form pairs to keep in the throughput section "
                         "(e.g. all/symmetric,all/affine); default all four")
    ap.add_argument("--large-dims", default=None, help="comma-separated d of the large section (e.g. 768)")
    args = ap.parse_args(argv)
    if args.only is None:
        sections = list(QUICK_SECTIONS if args.quick else SECTIONS)
    else:
        sections = [x for x in args.only.split(",") if x]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        ap.error(f"--only: unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        ap.error(f"--out {args.out!r} exists and is not a folder")
    cfg = config(args.quick, args.smoke)
    if args.variants:
        keep = {tuple(v.split("/")) for v in args.variants.split(",") if v}
        unknown = keep - set(VARIANTS)
        if unknown:
            ap.error(f"--variants: unknown {sorted('/'.join(u) for u in unknown)}; use intervention/form pairs "
                     f"from {['/'.join(v) for v in VARIANTS]}")
        cfg["throughput"] = [(shape, b, [v for v in vs if v in keep], n) for shape, b, vs, n in cfg["throughput"]]
        cfg["throughput"] = [c for c in cfg["throughput"] if c[2]]
    if args.large_dims:
        dims, k, cap = cfg["large"]
        try:
            cfg["large"] = ([int(x) for x in args.large_dims.split(",")], k, cap)
        except ValueError:
            ap.error(f"--large-dims: expected comma-separated integers, got {args.large_dims!r}")
    try:
        check_modules(sections, cfg)
    except MissingExtra as e:
        print(f"{prog}: error: {e}", file=sys.stderr, flush=True)
        return 2
    return run(sections, cfg, quick=bool(args.quick or args.smoke), out=args.out)


def run(sections, cfg, *, quick: bool, out: str) -> int:
    """Run ``sections`` of ``cfg`` (see :func:`config`) in float64, write the results to ``out``."""
    jax.config.update("jax_enable_x64", True)
    t_start = time.perf_counter()
    res = dict(machine=machine(), quick=quick, config=repr(cfg))
    print("machine:", res["machine"], flush=True)
    if "roofline" in sections:
        n = cfg["roofline"]
        res["roofline"] = dict(n=n, f64_gflops=matmul_rate(n, jax.numpy.float64) / 1e9,
                               f32_gflops=matmul_rate(n, jax.numpy.float32) / 1e9)
        print("matmul:", res["roofline"], flush=True)
    if "throughput" in sections:
        print("throughput:", flush=True)
        res["throughput"] = throughput(cfg["throughput"])
    if "batching" in sections:
        ndev = os.cpu_count() if jax.devices()[0].platform == "cpu" else len(jax.devices())
        print(f"batch layouts (up to {ndev} devices):", flush=True)
        res["batching"] = batching(cfg["batching"], ndev)
    if "compile" in sections:
        print("compile vs run:", flush=True)
        d, batch, forms = cfg["compile"]
        res["compile"] = compile_vs_run(d, batch, forms=forms)
    if "large" in sections:
        print("large problems:", flush=True)
        dims, k, cap = cfg["large"]
        res["large"] = large(dims, k, cap)
    res["total_s"] = time.perf_counter() - t_start
    os.makedirs(out, exist_ok=True)
    name = "quick" if res["quick"] else "full"
    with open(os.path.join(out, f"results_{name}.json"), "w") as fh:
        json.dump(res, fh, indent=1, default=float)
    md = markdown(res)
    with open(os.path.join(out, f"results_{name}.md"), "w") as fh:
        fh.write(md + f"\nTotal benchmark time: {res['total_s']:.0f} s.\n")
    plots(res, out)
    print(md)
    print(f"total {res['total_s']:.0f}s; results in {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
