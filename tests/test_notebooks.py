"""The notebooks in notebooks/ are committed without outputs and execute top to bottom without error.

Executed with nbclient in a kernel that runs *this* interpreter (``sys.executable``, i.e. the current
virtual environment), through a throw-away kernelspec put first on ``JUPYTER_PATH``. The kernel
inherits this process's environment (float64 is switched on by the notebooks themselves; the fast
compile flags of conftest.py carry over). Skipped when nbclient, nbformat, ipykernel or the notebooks'
own dependencies (matplotlib, scikit-learn) are not installed.
"""

import json
import sys
import time
import warnings
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_quickstart.ipynb", "02_tabular.ipynb", "03_flax.ipynb"]
KERNEL = "jaxsteer-test-venv"


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name):
    nb = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, f"{name} has no code cells"
    for i, cell in enumerate(code):
        assert cell.get("outputs", []) == [], f"{name}: code cell {i} has outputs; clear them before committing"
        assert cell.get("execution_count") is None, f"{name}: code cell {i} has an execution count"


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory):
    """A kernelspec that launches ipykernel with this interpreter, first on JUPYTER_PATH."""
    pytest.importorskip("ipykernel")
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "jaxsteer tests (current venv)",
        "language": "python",
    }))
    mp = pytest.MonkeyPatch()
    mp.setenv("JUPYTER_PATH", str(root))
    mp.setenv("JUPYTER_PLATFORM_DIRS", "1")  # silences jupyter_core's platformdirs migration warning
    mp.setenv("MPLBACKEND", "Agg")  # no display needed; inline figures still render in the kernel
    yield KERNEL
    mp.undo()


@pytest.mark.slow  # about a minute each; CI runs the slow tests as a separate step
@pytest.mark.filterwarnings("ignore")  # jupyter/zmq/asyncio deprecations are not ours to fix
@pytest.mark.parametrize("name", NAMES)
def test_notebook_executes(name, kernel_name):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("matplotlib")
    if name == "02_tabular.ipynb":
        pytest.importorskip("sklearn")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name=kernel_name, timeout=300, resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client.execute()
    elapsed = time.perf_counter() - t0
    print(f"{name}: executed in {elapsed:.1f} s")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                   if o.output_type == "stream")
    assert "notebook run time" in text
