"""Stored answers of the independent oracle (``tests/oracles.py``) on problems too slow to solve in every
test run: the matrix-free Newton–CG path (d ∈ {8, 12}) and three classes × three groups at d ≥ 2, for
all four variants.

    python tests/oracle_cases.py            # recompute and write tests/data/oracle_cases.json (~30 min)

``tests/test_solve_oracle_cases.py`` compares the solver with the stored answers in every run, and
(marked slow) recomputes a sample of them to check that the file still matches the oracle.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import oracles  # noqa: E402

PATH = HERE / "data" / "oracle_cases.json"
#: (k, m, d, seed): families drawn by ``oracles.random_family(np.random.default_rng(seed), k, m, d)``.
CASES = [(3, 3, 2, 1), (3, 3, 2, 2), (3, 3, 3, 3), (2, 2, 8, 4), (2, 2, 8, 5), (3, 2, 8, 6), (2, 2, 12, 7),
         (2, 2, 12, 8)]
VARIANTS = [("affirmative", "symmetric"), ("affirmative", "affine"), ("all", "symmetric"), ("all", "affine")]


def family(k, m, d, seed):
    return oracles.random_family(np.random.default_rng(seed), k, m, d)


def solve(intervention, form, q, mu, S) -> dict:
    if intervention == "affirmative":
        r = oracles.affirmative(q, mu, S, form=form)
        out = dict(kl=float(r["kl"]), at_boundary=False)
        if form == "symmetric":  # convex: the target is unique
            out.update(means=np.asarray(r["means"]).tolist(), covs=np.asarray(r["covs"]).tolist())
        return out
    r = oracles.all_groups(q, mu, S, form=form, n_starts=4)
    interior = r["interior"]["kl"] if r["interior"] is not None else None
    return dict(kl=float(r["kl"]), at_boundary=bool(r["at_boundary"]),
                interior_kl=None if interior is None else float(interior))


def compute(cases=CASES, variants=VARIANTS) -> list[dict]:
    rows = []
    for k, m, d, seed in cases:
        q, mu, S = family(k, m, d, seed)
        for intervention, form in variants:
            t0 = time.perf_counter()
            out = solve(intervention, form, q, mu, S)
            rows.append(dict(k=k, m=m, d=d, seed=seed, intervention=intervention, form=form,
                             seconds=time.perf_counter() - t0, **out))
            print(f"({k}, {m}, {d}) seed {seed} {intervention}/{form}: KL {out['kl']:.10f}"
                  f"{' (boundary)' if out['at_boundary'] else ''} in {rows[-1]['seconds']:.0f} s", flush=True)
    return rows


if __name__ == "__main__":
    rows = compute()
    PATH.write_text(json.dumps(dict(generator="tests/oracle_cases.py", rows=rows), indent=1) + "\n")
    print(f"wrote {PATH}")
