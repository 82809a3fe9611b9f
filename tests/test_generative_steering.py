"""Smoke test of the generative-steering experiment: a tiny decoder trained in seconds, the whole pipeline."""

import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_generative_steering_smoke(tmp_path):
    from benchmarks.experiments import generative_steering as gs
    from benchmarks.experiments import tiny_decoder as td

    # label_weight 10 makes 300 steps enough for the over/under word (AUC 0.84; 120 plain steps gave 0.51, a model
    # whose frozen head never said "over" at any α, so no readout-R1 assertion below could be checked)
    model_cfg = dict(td.QUICK, n=1500, steps=300, d_model=16, heads=2, layers=2, label_weight=10.0)
    cfg = dict(gs.QUICK, n_eval=300, alphas=(0.0, 1.0, 3.0), oracle_step=0.5, oracle_max=3.0, bootstrap=50,
               table_alphas=(0.0, 1.0, 3.0))
    res = gs.run(cfg, model_cfg, cache=str(tmp_path / "cache"), log=lambda *_: None)
    out = str(tmp_path / "gs")
    gs.write(res, out, verdict="smoke")
    text = (tmp_path / "gs.md").read_text()
    assert "## Verdict" in text and "oracle α" in text
    assert json.loads((tmp_path / "gs.json").read_text())["n_eval"] == 300
    assert (tmp_path / "gs.png").stat().st_size > 10_000

    gate = res["quality_gate"]
    assert 0.5 < gate["auc_lr_stated"] <= 1 and 0 <= gate["auc_lm"] <= 1
    # the smoke model has learnt the slot (measured 0.84 against the regression's 0.85): steering it means something
    assert gate["auc_lm"] > 0.75
    expected = {"pooled", "per-group", "MM + pooled", "MiMiC + pooled", "LEACE + pooled", "EF affine",
                "EF symmetric", "oracle α"}
    assert set(res["results"]) == expected
    base = res["unsteered"]["R1"]["success"]
    pooled0 = res["results"]["pooled"][0]
    # α = 0 with no map is the unsteered model, row for row
    assert pooled0["alpha"] == 0.0 and pooled0["R1"]["success"]["female"] == base["female"]
    assert pooled0["R1"]["success"]["male"] == base["male"]
    assert pooled0["utility"]["kl"]["all"] < 1e-4
    # affirmative EF keeps the reference group (men): at α = 0 their outputs are the model's own
    for form in ("affine", "symmetric"):
        assert res["methods"][f"EF {form}"]["reference"] == "male"
        assert res["results"][f"EF {form}"][0]["R1"]["success"]["male"] == base["male"]
    # steering towards "over" raises the success rate of the pooled vector under both readouts
    last = res["results"]["pooled"][-1]
    for readout in ("R1", "R2"):
        assert last[f"{readout}_overall"]["success"] > pooled0[f"{readout}_overall"]["success"]
    # the oracle's grid contains α itself, so its flip gap is never larger than the pooled vector's at α
    for ro, rp in zip(res["results"]["oracle α"], res["results"]["pooled"]):
        for readout in ("R1", "R2"):
            assert abs(ro[readout]["flip"]["gap"]) <= abs(rp[readout]["flip"]["gap"]) + 1e-12
    for rows in res["results"].values():
        for r in rows:
            for readout in ("R1", "R2"):
                lo, hi = r[readout]["flip"]["gap_ci"]
                assert lo <= hi and -1 <= lo and hi <= 1
            assert 0 <= r["utility"]["mass"]["all"] <= 1 + 1e-6
    assert res["module_check_max_abs"] < 1e-3
    assert np.isfinite(res["seconds"]["total"])
