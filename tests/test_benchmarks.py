"""The benchmark entry point runs end to end on tiny sizes (timings are never asserted)."""

import json
import os
import subprocess
import sys

import pytest


def test_benchmark_smoke(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "--smoke", "--out", str(tmp_path),
         "--only", "throughput,large,compile,roofline"],
        cwd=root, env=dict(os.environ), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    res = json.loads((tmp_path / "results_quick.json").read_text())
    assert res["machine"]["cores"] >= 1 and res["machine"]["jax"]
    assert res["throughput"] and all(r["jaxsteer"][-1]["converged"] == 1.0 for r in res["throughput"])
    for r in res["throughput"]:
        assert r["kl_excess"]["jaxsteer"] <= 1e-8
    assert res["large"][0]["converged"] and res["large"][0]["residual"] <= 1e-10
    assert not any(r["recompiled"] for r in res["compile"].values())
    assert (tmp_path / "results_quick.md").read_text().startswith("# Benchmark results")


@pytest.mark.slow
def test_chunking_benchmark_smoke():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.chunking", "--d", "2", "--batch", "3", "--chunks", "0,2"],
        cwd=root, env=dict(os.environ), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = [ln for ln in out.stdout.splitlines() if "problems/s" in ln]
    assert len(lines) == 2 and all("converged 1.000" in ln for ln in lines)
