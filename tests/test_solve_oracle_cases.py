"""nearest_ideal against the independent oracle's stored answers (tests/oracle_cases.py): the
matrix-free Newton–CG path (d = 8, 12) and three classes × three groups at d ≥ 2, all four variants.

The symmetric affirmative problem is convex: equal optima and targets. The others are non-convex: the
solver's structured starts must reach the best of the oracle's many random starts (or beat it), except
for the affine form at d ≥ 8. There the landscape has many nearby local optima (measured on the
(3, 2, 8) case: 0.2075–0.237 for one group from 45 sign patterns, the starting value a poor guide to
the basin), the oracle tries 64 random sign patterns and 8 random rotations per group, and the solver's
screened structured starts may stop in a local optimum slightly above the oracle's best:
``AFFINE_LARGE_D_RTOL`` bounds the gap (measured: 5e-5 affirmative, 5e-4 ``all``, on 1 of 5 families).
"""

import functools
import json

import numpy as np
import pytest

import jaxsteer as js
import oracle_cases

ROWS = json.loads(oracle_cases.PATH.read_text())["rows"]
SHAPES = sorted({(r["k"], r["m"], r["d"]) for r in ROWS})
#: Shapes compared in the default run; the others (and a fresh oracle solve) run with -m slow.
DEFAULT_SHAPES = [(3, 3, 2), (2, 2, 8), (2, 2, 12)]
AFFINE_LARGE_D_RTOL = 1e-3


@functools.lru_cache(maxsize=None)
def batch(shape):
    """The stored cases of one shape as one batched family, and their seeds."""
    seeds = sorted({r["seed"] for r in ROWS if (r["k"], r["m"], r["d"]) == shape})
    arrays = [oracle_cases.family(*shape, s) for s in seeds]
    return js.GaussianFamily(*(np.stack(x) for x in zip(*arrays))), seeds


@functools.lru_cache(maxsize=None)
def solve(shape, intervention, form):
    fam, _ = batch(shape)
    return js.nearest_ideal(fam, intervention=intervention, form=form)


def _check(shape, intervention, form):
    sol = solve(shape, intervention, form)
    _, seeds = batch(shape)
    for b, seed in enumerate(seeds):
        ref = next(r for r in ROWS if (r["k"], r["m"], r["d"], r["seed"]) == (*shape, seed)
                   and r["intervention"] == intervention and r["form"] == form)
        ours = float(sol.kl[b])
        if ref["at_boundary"]:
            assert int(sol.status[b]) == js.Status.NO_MINIMISER, (seed, int(sol.status[b]))
            if ref["interior_kl"] is not None:
                assert ours <= ref["interior_kl"] + 1e-8
            continue
        assert bool(sol.converged[b]), (seed, js.status_message(sol.status[b]), float(sol.residual[b]))
        if form == "affine" and shape[2] >= 8:
            assert ours <= ref["kl"] * (1 + AFFINE_LARGE_D_RTOL), (seed, ours, ref["kl"])
            continue
        assert ours <= ref["kl"] + 1e-8 * max(1.0, ref["kl"]), (seed, ours, ref["kl"])
        np.testing.assert_allclose(ours, ref["kl"], rtol=1e-6, atol=1e-9, err_msg=f"seed {seed}")
        if "means" in ref:
            np.testing.assert_allclose(sol.target.means[b], ref["means"], atol=1e-5)
            np.testing.assert_allclose(sol.target.covs[b], ref["covs"], atol=1e-5)


@pytest.mark.parametrize("shape", DEFAULT_SHAPES)
@pytest.mark.parametrize("intervention, form", oracle_cases.VARIANTS)
def test_matches_stored_oracle(shape, intervention, form):
    _check(shape, intervention, form)


@pytest.mark.slow
@pytest.mark.parametrize("shape", [s for s in SHAPES if s not in DEFAULT_SHAPES])
@pytest.mark.parametrize("intervention, form", oracle_cases.VARIANTS)
def test_matches_stored_oracle_other_shapes(shape, intervention, form):
    _check(shape, intervention, form)


@pytest.mark.slow
def test_stored_answers_are_the_oracles():
    """Recompute a sample of the stored answers with the oracle itself (the file must not drift)."""
    for row in ROWS:
        if (row["k"], row["m"], row["d"]) != (3, 3, 2) and row["d"] != 12:
            continue
        if row["d"] == 12 and row["intervention"] == "all":
            continue  # several minutes each
        q, mu, S = oracle_cases.family(row["k"], row["m"], row["d"], row["seed"])
        fresh = oracle_cases.solve(row["intervention"], row["form"], q, mu, S)
        np.testing.assert_allclose(fresh["kl"], row["kl"], rtol=1e-9, err_msg=str(row))
