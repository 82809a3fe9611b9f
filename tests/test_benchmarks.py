"""The benchmark entry points (``python -m benchmarks``, ``jaxsteer bench``) run end to end on tiny sizes
(timings are never asserted). The suite run from an installed wheel: tests/test_bench_wheel.py."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
def test_batching_section_smoke(tmp_path):
    """The batch-layout section: vmapped and chunked, unsharded and sharded over 2 virtual devices,
    each layout in a fresh interpreter (``benchmarks.chunking --devices``)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "--smoke", "--out", str(tmp_path), "--only", "batching"],
        cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    rows = json.loads((tmp_path / "results_quick.json").read_text())["batching"]
    ndev = max(r["devices"] for r in rows)
    assert {(r["devices"], r["chunk_size"]) for r in rows} == {(1, None), (1, 2), (ndev, None), (ndev, 2)}
    assert all(r["converged"] == 1.0 and r["max_abs_dkl"] <= 1e-12 for r in rows)
    assert "## Batch layouts" in (tmp_path / "results_quick.md").read_text()


@pytest.mark.slow
def test_chunking_benchmark_sharded(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.chunking", "--d", "2", "--batch", "3", "--chunks", "0,2",
         "--devices", "2", "--json", str(tmp_path / "rows.json")],
        cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = [ln for ln in out.stdout.splitlines() if "problems/s" in ln]
    assert len(lines) == 2 and all("devices=2" in ln and "converged 1.000" in ln for ln in lines)
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [r["chunk_size"] for r in rows] == [None, 2] and rows[1]["max_abs_dkl"] <= 1e-12


@pytest.mark.parametrize("command", [["bench"], ["bench", "run"]])
def test_python_m_jaxsteer_bench(tmp_path, command):
    """``python -m jaxsteer bench [run] ...`` in the checkout (it once exited at import: the checkout's
    ``benchmarks/__main__.py`` parsed the command line of ``jaxsteer``)."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run(
        [sys.executable, "-m", "jaxsteer", *command, "--smoke", "--only", "roofline", "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "# Benchmark results (quick run)" in out.stdout and "Matrix multiply (128²)" in out.stdout
    res = json.loads((tmp_path / "results_quick.json").read_text())
    assert res["roofline"]["f64_gflops"] > 0 and "throughput" not in res


def test_bench_missing_extra_is_one_line(tmp_path, monkeypatch, capsys):
    from jaxsteer import cli

    monkeypatch.setitem(sys.modules, "cvxpy", None)  # importlib.util.find_spec("cvxpy") is None
    out = tmp_path / "out"
    assert cli.main(["bench", "--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "cvxpy" in err[0] and "pip install 'jaxsteer[bench]'" in err[0] and "scipy" not in err[0]
    assert not out.exists()


def test_bench_required_modules():
    from jaxsteer.bench import suite

    quick = suite.config(True, False)
    assert suite.required_modules(suite.QUICK_SECTIONS, quick) == ["scipy", "cvxpy", "clarabel"]
    assert suite.required_modules(["large", "roofline", "compile", "batching"], quick) == ["scipy"]
    assert suite.required_modules(["roofline", "compile", "batching"], quick) == []
    only_all = [(shape, b, [("all", "affine")], n) for shape, b, _, n in quick["throughput"]]
    assert suite.required_modules(["throughput"], dict(quick, throughput=only_all)) == []


@pytest.mark.parametrize("argv, message", [
    (["bench", "--only", "nope"], "--only: unknown section(s) ['nope']"),
    (["bench", "walk"], "argument command: invalid choice: 'walk'"),
    (["bench", "--quick", "--large-dims", "x"], "--large-dims: expected comma-separated integers"),
])
def test_bench_usage_errors_are_one_line(argv, message, capsys):
    from jaxsteer import cli

    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jaxsteer bench: error: ") and message in err[0], err
