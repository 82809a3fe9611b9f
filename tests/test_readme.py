"""Every ```python block of the README runs as written, in a fresh interpreter with JAX's defaults
(float32: nothing enabled beforehand), and prints what its comments say."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def _run(code, tmp_path, check_stderr=False):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(README.parent), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, f"README block failed:\n{code}\n--- stderr ---\n{out.stderr[-3000:]}"
    assert not (check_stderr and "Warning" in out.stderr), out.stderr[-3000:]
    return out.stdout


def test_readme_has_the_four_examples():
    assert len(BLOCKS) == 4
    assert "load_adult" in BLOCKS[0] and "partial_fit" in BLOCKS[1]
    assert "GaussianFamily.univariate" in BLOCKS[2] and "jsnn.insert" in BLOCKS[3]


def test_readme_steerer_example(tmp_path):
    """The first example, on Adult at default float32: the Steerer estimates and solves in float64."""
    out = _run(BLOCKS[0], tmp_path).splitlines()
    assert float(out[0].split()[0]) < 0.2  # the raw classifier's ΔEO on the test split
    assert "converged=True" in "\n".join(out)


def test_readme_streaming_example(tmp_path):
    """partial_fit over five batches and from_stats on merged statistics give the same model."""
    out = _run(BLOCKS[1], tmp_path, check_stderr=True)
    kl_stream, kl_merged = map(float, out.split())
    assert 0.001 < kl_stream and abs(kl_stream - kl_merged) < 1e-9 * kl_stream


def test_readme_model_example(tmp_path):
    out = _run(BLOCKS[2], tmp_path).splitlines()
    assert out[0].split()[1] == "True"                       # converged
    assert abs(float(out[-1])) < 1e-12                       # the EO gap of the Bayes rule on the target


def test_readme_flax_example(tmp_path):
    out = _run(BLOCKS[3], tmp_path).splitlines()
    assert out[0] == "(5, 2)"
    assert out[1] == "True (2000, 4)"
