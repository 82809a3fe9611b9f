"""Batch layouts: one vmapped batch, ``chunk_size`` chunks, and the batch sharded over devices
(``python -m jaxsteer.bench.chunking``; in a source checkout also ``python -m benchmarks.chunking``).

A vmapped batch iterates until its slowest problem has converged; ``nearest_ideal(chunk_size=c)`` solves
the batch in chunks of ``c`` problems one after the other. With ``--devices N`` the batch is also split
over ``N`` devices by :func:`jaxsteer.solve.sharded.nearest_ideal_sharded`; on a CPU-only machine the
devices are ``N`` virtual host devices (``--xla_force_host_platform_device_count``), which is how one
process uses several cores for small problems (one small problem runs on one core). Prints problems/s
per layout (compile excluded) and checks that the KLs agree; ``--json FILE`` also writes the rows (used
by the ``batching`` section of ``jaxsteer bench``).
"""

from __future__ import annotations

import argparse
import json
import os
import time


def _parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--m", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--form", default="affine")
    ap.add_argument("--intervention", default="affirmative")
    ap.add_argument("--chunks", default="0,1,8",
                    help="chunk sizes; 0 = one vmapped batch, 'auto' = the default layout of this backend")
    ap.add_argument("--devices", type=int, default=1,
                    help="shard the batch over this many devices (virtual host devices on a CPU-only "
                         "machine); 1 = unsharded")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    if args.devices > 1:
        # Must precede the start of jax's CPU backend in this process (importing jax does not start it);
        # only affects the CPU platform.
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   f" --xla_force_host_platform_device_count={args.devices}").strip()
    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    import jaxsteer as js
    from jaxsteer.datasets.synthetic import make_gaussian_family
    from jaxsteer.solve.sharded import batch_mesh, nearest_ideal_sharded

    ndev = len(jax.devices())
    if args.devices > 1 and ndev < args.devices:
        raise SystemExit(f"--devices {args.devices}: only {ndev} device(s) available")
    fam = make_gaussian_family(jax.random.PRNGKey(1000 + args.d), args.k, args.m, args.d,
                               batch_shape=(args.batch,))
    mesh = batch_mesh(jax.devices()[:args.devices]) if args.devices > 1 else None
    rows, ref = [], None
    for c in (x if x == "auto" else int(x) for x in args.chunks.split(",")):
        opts = dict(intervention=args.intervention, form=args.form, chunk_size=None if c == 0 else c)
        if mesh is None:
            compiled = jax.jit(lambda f, o=opts: js.nearest_ideal(f, **o))
            t0 = time.perf_counter()
            compiled = compiled.lower(fam).compile()
            tc = time.perf_counter() - t0
            run = lambda: compiled(fam)  # noqa: E731
        else:
            run = lambda o=opts: nearest_ideal_sharded(fam, mesh=mesh, **o)  # noqa: E731
            t0 = time.perf_counter()
            jax.block_until_ready(run())  # compiles (the sharded solve is jitted inside)
            tc = time.perf_counter() - t0
        t0 = time.perf_counter()
        sol = jax.block_until_ready(run())
        t = time.perf_counter() - t0
        kl = np.asarray(sol.kl)
        ref = kl if ref is None else ref
        row = dict(k=args.k, m=args.m, d=args.d, batch=args.batch, intervention=args.intervention,
                   form=args.form, chunk_size=c or None, devices=args.devices, per_s=args.batch / t,
                   run_s=t, compile_s=tc, converged=float(np.mean(np.asarray(sol.converged))),
                   max_abs_dkl=float(np.max(np.abs(kl - ref))), platform=jax.devices()[0].platform)
        rows.append(row)
        print(f"{args.intervention}/{args.form} k={args.k} m={args.m} d={args.d} batch={args.batch} "
              f"devices={args.devices} chunk_size={c or None}: {row['per_s']:,.1f} problems/s "
              f"(run {t:.2f} s, {'compile' if mesh is None else 'first call'} {tc:.1f} s), converged "
              f"{row['converged']:.3f}, max |ΔKL| vs first {row['max_abs_dkl']:.1e}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
