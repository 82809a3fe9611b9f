"""Lock-step stragglers: one vmapped batch against ``chunk_size`` chunks (``python -m benchmarks.chunking``).

A vmapped batch iterates until its slowest problem has converged; ``nearest_ideal(chunk_size=c)`` solves
the batch in chunks of ``c`` problems one after the other. Prints problems/s per chunk size (compile
excluded) and checks that the KLs agree.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import jaxsteer as js  # noqa: E402
from jaxsteer.datasets.synthetic import make_gaussian_family  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--form", default="affine")
    ap.add_argument("--intervention", default="affirmative")
    ap.add_argument("--chunks", default="0,1,8", help="chunk sizes; 0 = one vmapped batch")
    args = ap.parse_args(argv)
    fam = make_gaussian_family(jax.random.PRNGKey(1000 + args.d), 2, 2, args.d, batch_shape=(args.batch,))
    ref = None
    for c in (int(x) for x in args.chunks.split(",")):
        fn = jax.jit(lambda f, c=c: js.nearest_ideal(f, intervention=args.intervention, form=args.form,
                                                     chunk_size=None if c == 0 else c))
        t0 = time.perf_counter()
        compiled = fn.lower(fam).compile()
        tc = time.perf_counter() - t0
        t0 = time.perf_counter()
        sol = jax.block_until_ready(compiled(fam))
        t = time.perf_counter() - t0
        kl = np.asarray(sol.kl)
        ref = kl if ref is None else ref
        print(f"{args.intervention}/{args.form} d={args.d} batch={args.batch} chunk_size={c or None}: "
              f"{args.batch / t:,.1f} problems/s (run {t:.2f} s, compile {tc:.1f} s), converged "
              f"{np.mean(np.asarray(sol.converged)):.3f}, max |ΔKL| vs first {np.max(np.abs(kl - ref)):.1e}",
              flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
