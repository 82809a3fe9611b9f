"""What steering costs inside a Flax training step (issue 4's measurements).

    python -m benchmarks.experiments.flax_overhead [--d 384] [--batch 256] [--steps 200]
        [--gap-dims 16,64,384] [--gap-batch 2048] [--dtype float32] [--out benchmarks/results/flax_overhead]

Two measurements, each the median of ``--steps`` calls after compilation (compilation timed
separately), in one process:

1. **Step overhead of a Steer layer.** An MLP ``d → d → d → 2`` (GELU) trained by an ``nnx.jit``
   step (Adam, softmax cross-entropy, minibatch ``--batch``): plain; with a *frozen*
   :class:`jaxsteer.nn.Steer` (``d × d`` per group, 2 groups) inserted after the second layer by
   :func:`jaxsteer.nn.insert` (the optimizer skips it); with a *trainable* Steer (optimised too).
   The group ids reach the inserted layer through the :func:`jaxsteer.nn.groups` context entered
   inside the jitted step. A trace counter checks that no variant recompiles between steps.
2. **Cost of one ideal_gap evaluation with its gradient** (``jax.value_and_grad`` of
   :func:`jaxsteer.losses.ideal_gap` in ``h [n, d]``, k = m = 2, affirmative/symmetric, float64): a
   cold solve (to the default tolerance) and a warm-started one (``max_iter=2`` from the previous
   solution, as in a training loop), each jitted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np


def _median_time(fn, steps: int) -> float:
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def step_overhead(d: int, batch: int, steps: int, dtype: str, seed: int = 0) -> dict:
    """Median training-step time (s) of an MLP with no / a frozen / a trainable Steer of width ``d``."""
    import optax
    from flax import nnx

    import jaxsteer.nn as jsnn

    dt = jnp.dtype(dtype)

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(d, d, rngs=rngs, param_dtype=dt, dtype=dt)
            self.l2 = nnx.Linear(d, d, rngs=rngs, param_dtype=dt, dtype=dt)
            self.head = nnx.Linear(d, 2, rngs=rngs, param_dtype=dt, dtype=dt)

        def __call__(self, x):
            return self.head(jax.nn.gelu(self.l2(jax.nn.gelu(self.l1(x)))))

    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((batch, d)), dt)
    y = jnp.asarray(rng.integers(0, 2, batch))
    a = jnp.asarray(rng.integers(0, 2, batch))
    A = jnp.asarray(np.eye(d) + 0.01 * rng.standard_normal((2, d, d)), dt)
    b = jnp.asarray(0.01 * rng.standard_normal((2, d)), dt)
    tx = optax.adam(1e-3)  # one optax object for every variant: it is part of what nnx.jit caches on
    out = {}
    for variant in ("plain", "frozen Steer", "trainable Steer"):
        model = MLP(nnx.Rngs(seed))
        if variant != "plain":
            jsnn.insert(model, "l2", jsnn.Steer(d, 2, A=A, b=b, trainable=variant == "trainable Steer"))
        opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
        traces = [0]

        @nnx.jit
        def train_step(model, opt, x, y, a):
            traces[0] += 1

            def loss_fn(model):
                with jsnn.groups(a):
                    logits = model(x)
                return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

            loss, grads = nnx.value_and_grad(loss_fn)(model)
            opt.update(model, grads)
            return loss

        t0 = time.perf_counter()
        jax.block_until_ready(train_step(model, opt, x, y, a))
        first = time.perf_counter() - t0
        t = _median_time(lambda: train_step(model, opt, x, y, a), steps)
        out[variant] = dict(step_s=t, first_call_s=first, traces=traces[0])
        print(f"  step d={d} batch={batch} {variant:16s}: {1e3 * t:7.2f} ms (first call {first:.1f} s, "
              f"traces {traces[0]})", flush=True)
    return out


def gap_cost(d: int, n: int, steps: int, seed: int = 0) -> dict:
    """Median time (s) of value_and_grad(ideal_gap) at ``h [n, d]``: cold and warm-started (2 steps)."""
    from jaxsteer.losses import ideal_gap

    rng = np.random.default_rng(seed)
    y = jnp.asarray(rng.integers(0, 2, n))
    a = jnp.asarray(rng.integers(0, 2, n))
    # class×group means apart, and a group-dependent scale: a family far from ideal
    h = jnp.asarray(rng.standard_normal((n, d)) * (1 + 0.3 * np.asarray(a))[:, None]
                    + 0.5 * np.asarray(y)[:, None] + 0.3 * np.asarray(a)[:, None] * rng.standard_normal(d))
    kw = dict(num_classes=2, num_groups=2)

    cold = jax.jit(jax.value_and_grad(lambda h: ideal_gap(h, y, a, **kw)))
    t0 = time.perf_counter()
    v0, _ = jax.block_until_ready(cold(h))
    first_cold = time.perf_counter() - t0
    t_cold = _median_time(lambda: cold(h), 3 if d > 64 else max(3, steps // 20))

    _, sol = ideal_gap(h, y, a, return_solution=True, **kw)
    warm = jax.jit(jax.value_and_grad(lambda h, s: ideal_gap(h, y, a, warm_start=s, max_iter=2, **kw)))
    h2 = h + 1e-3 * jnp.asarray(rng.standard_normal(h.shape))  # the next step's (slightly moved) features
    t0 = time.perf_counter()
    v1, _ = jax.block_until_ready(warm(h2, sol))
    first_warm = time.perf_counter() - t0
    t_warm = _median_time(lambda: warm(h2, sol), 5 if d > 64 else steps)
    print(f"  ideal_gap+grad d={d} n={n}: cold {1e3 * t_cold:8.2f} ms (first {first_cold:.1f} s), "
          f"warm(2) {1e3 * t_warm:8.2f} ms (first {first_warm:.1f} s); gap {float(v0):.4f}", flush=True)
    return dict(cold_s=t_cold, warm_s=t_warm, first_cold_s=first_cold, first_warm_s=first_warm, gap=float(v0),
                gap_warm=float(v1))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--d", type=int, default=384)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--gap-dims", default="16,64,384")
    p.add_argument("--gap-batch", type=int, default=2048)
    p.add_argument("--out", default="benchmarks/results/flax_overhead")
    args = p.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    t_all = time.perf_counter()
    steps = step_overhead(args.d, args.batch, args.steps, args.dtype)
    dims = [int(s) for s in args.gap_dims.split(",") if s.strip()]
    gaps = {d: gap_cost(d, args.gap_batch, max(5, args.steps // 10)) for d in dims}
    meta = dict(
        command="python -m benchmarks.experiments.flax_overhead " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        jax=jax.__version__, backend=jax.default_backend(), machine=platform.processor() or platform.machine(),
        cores=os.cpu_count(), load_avg=os.getloadavg()[0], seconds=time.perf_counter() - t_all,
    )
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as fh:
        json.dump(dict(meta=meta, step=steps, gap={str(k): v for k, v in gaps.items()}), fh, indent=1)
    plain = steps["plain"]["step_s"]
    lines = [
        "# Steering inside a Flax training step: what it costs",
        "",
        f"`{meta['command']}` — {meta['cores']} cores, {meta['backend']} backend, jax {meta['jax']}, "
        f"load average {meta['load_avg']:.1f} at the end, {meta['seconds']:.0f} s in all.",
        "",
        f"## Training step, MLP {args.d} → {args.d} → {args.d} → 2, minibatch {args.batch}, {args.dtype}, Adam "
        f"(median of {args.steps} steps)",
        "",
        "| variant | step ms | overhead ms | × plain | first call s | traces |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in steps.items():
        lines.append(f"| {name} | {1e3 * r['step_s']:.2f} | {1e3 * (r['step_s'] - plain):+.2f} | "
                     f"{r['step_s'] / plain:.2f} | {r['first_call_s']:.1f} | {r['traces']} |")
    lines += [
        "",
        "`traces` counts how often the step function was traced over the first call and all timed calls: "
        "1 means no recompilation between steps.",
        "",
        f"## `jax.value_and_grad(ideal_gap)`, h [{args.gap_batch}, d], k = m = 2, affirmative/symmetric, float64",
        "",
        "| d | cold solve ms | warm start (max_iter=2) ms | compile+first cold s | compile+first warm s | gap (nats) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for d, r in gaps.items():
        lines.append(f"| {d} | {1e3 * r['cold_s']:.2f} | {1e3 * r['warm_s']:.2f} | {r['first_cold_s']:.1f} | "
                     f"{r['first_warm_s']:.1f} | {r['gap']:.4f} |")
    with open(args.out + ".md", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}.json and {args.out}.md ({meta['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
