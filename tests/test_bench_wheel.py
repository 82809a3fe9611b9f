"""`jaxsteer bench --quick` from an installed wheel: build the wheel from the package's own files, install it
into a fresh virtual environment and run the console script outside the checkout.

Nothing is downloaded: the wheel is built with the installed setuptools (``--no-build-isolation
--no-index``, setuptools >= 70.1 from the ``test`` extra), installed with ``--no-deps --no-index``, and
the fresh environment sees the already installed dependencies through a ``.pth`` file listing this
interpreter's site-packages. A ``.pth`` file's lines are only added to ``sys.path``; the ``.pth`` files
inside those folders are not processed, so an editable install of the checkout stays invisible there and
``import jaxsteer`` finds the wheel's copy (checked below).

Wall time on 2 cores: about 45 s (build and install about 10 s, the quick benchmark about 35 s).
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What the wheel must carry: the benchmark suite and the vendored data sets (read via importlib.resources).
BENCH_FILES = ["jaxsteer/bench/__init__.py", "jaxsteer/bench/__main__.py", "jaxsteer/bench/suite.py",
               "jaxsteer/bench/reference_solvers.py", "jaxsteer/bench/chunking.py", "jaxsteer/bench/core_solve.py"]
DATA_FILES = ["jaxsteer/datasets/data/adult.data.gz", "jaxsteer/datasets/data/adult.test.gz",
              "jaxsteer/datasets/data/adult.names", "jaxsteer/datasets/data/compas-two-years.csv.gz",
              "jaxsteer/datasets/data/README.md"]


def _run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _build_wheel(tmp: Path) -> Path:
    """The wheel of a copy of the package's sources (building in the checkout would write build/ and
    egg-info folders into it)."""
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "jaxsteer", src / "jaxsteer", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(dist), str(src)], env=_pip_env())
    wheels = list(dist.glob("jaxsteer-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _pip_env():
    return dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")


def _venv_with_wheel(tmp: Path, wheel: Path) -> Path:
    """A fresh venv with the wheel installed (console script included); returns its bin folder."""
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    bindir = venv / "bin"
    py = bindir / "python"
    # pip of this interpreter installs into the new environment (its own site-packages is not visible
    # there yet, so nothing of it is taken as already installed).
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q", str(wheel)],
         env=_pip_env())
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    here = sysconfig.get_paths()
    (site / "_jaxsteer_test_deps.pth").write_text("\n".join(dict.fromkeys([here["purelib"], here["platlib"]])) + "\n")
    return bindir


def test_wheel_ships_bench_and_runs_quick(tmp_path):
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    missing = [n for n in BENCH_FILES + DATA_FILES if n not in names]
    assert not missing, f"not in the wheel: {missing}"
    assert not any(n.startswith("benchmarks/") for n in names)  # the checkout's folder is not shipped
    assert "jaxsteer = jaxsteer.cli:main" in entry_points

    bindir = _venv_with_wheel(tmp_path, wheel)
    work = tmp_path / "elsewhere"  # outside the checkout: nothing of it is importable from here
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    where = _run([str(bindir / "python"), "-c", "import jaxsteer.bench; print(jaxsteer.bench.__file__)"],
                 cwd=work, env=env).stdout.strip()
    assert Path(where).resolve().is_relative_to((tmp_path / "venv").resolve()), where

    t0 = time.perf_counter()
    proc = subprocess.run([str(bindir / "jaxsteer"), "bench", "--quick"], cwd=work, env=env, capture_output=True, text=True,
                          timeout=600)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "# Benchmark results (quick run)" in out
    assert "| k, m, d | intervention/form | batch → problems/s (compile s) | scipy /s | cvxpy /s |" in out, out[-3000:]
    assert "## Large problems" in out
    # Default output folder: ./jaxsteer-bench of the working directory.
    res = json.loads((work / "jaxsteer-bench" / "results_quick.json").read_text())
    (row,) = res["throughput"]
    assert row["jaxsteer"][-1]["converged"] == 1.0 and row["kl_excess"]["jaxsteer"] <= 1e-8
    assert {"scipy", "cvxpy"} <= set(row["kl_excess"])
    assert res["large"][0]["converged"] and res["large"][0]["residual"] <= 1e-10
    print(f"jaxsteer bench --quick from the wheel: {wall:.1f} s wall ({res['total_s']:.1f} s inside the suite)")
