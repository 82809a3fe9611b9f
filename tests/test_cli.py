"""The ``jaxsteer`` command line: fit / apply round trip on a CSV, one-line errors with exit status 2."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxsteer import cli, io


@pytest.fixture(autouse=True)
def no_cache(monkeypatch):
    monkeypatch.setenv("JAXSTEER_CACHE_DIR", "")


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture
def data_csv(tmp_path):
    rng = np.random.default_rng(0)
    n = 600
    a = rng.integers(0, 2, n)
    y = (rng.random(n) < np.where(a == 1, 0.5, 0.25)).astype(int)
    x1 = rng.normal(size=n) + 1.2 * y + 0.5 * a
    x2 = rng.normal(size=n) * (1 + 0.3 * a) - 0.4 * y
    colour = np.where(rng.random(n) < 0.5 + 0.2 * y, "red", "blue")
    rows = [[f"{x1[j]:.6f}", f"{x2[j]:.6f}", colour[j], ["F", "M"][a[j]], y[j]] for j in range(n)]
    path = tmp_path / "data.csv"
    _write_csv(path, ["x1", "x2", "colour", "sex", "income"], rows)
    return path


def _run(argv, capsys):
    rc = cli.main([str(v) for v in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_fit_then_apply_round_trip(data_csv, tmp_path, capsys):
    maps_path = tmp_path / "maps.npz"
    rc, out, err = _run(["fit", data_csv, "--label", "income", "--group", "sex", "--out", maps_path, "--reference", "M"], capsys)
    assert rc == 0, err
    assert "KL(ideal ‖ fitted)" in out and "converged=True" in out
    loaded = io.load_steerer(str(maps_path))
    assert loaded.layout.names == ("x1", "x2", "colour=blue", "colour=red")
    assert loaded.meta["reference"] == "M" and loaded.meta["params"]["form"] == "affine"

    steered = tmp_path / "steered.csv"
    rc, out, err = _run(["apply", maps_path, data_csv, "--group", "sex", "--label", "income", "--out", steered], capsys)
    assert rc == 0, err
    cols = io.read_csv(str(steered))
    assert list(cols) == ["x1", "x2", "colour=blue", "colour=red", "sex", "income"]
    # The CLI's output equals the Steerer applied in Python to the same encoded data.
    import jaxsteer as js

    src = io.read_csv(str(data_csv))
    X = loaded.layout.encode(src)
    y = np.array(src["income"], int)
    st = js.Steerer(reference="M").fit(X, y, np.array(src["sex"]))
    want = loaded.layout.decode(st.transform(X, np.array(src["sex"]), y))
    got = np.column_stack([np.array(cols[c], float) for c in loaded.layout.names])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    # The reference group's rows are unchanged by the affirmative subgroup maps.
    ref = np.array(src["sex"]) == "M"
    np.testing.assert_allclose(got[ref][:, :2], np.column_stack([np.array(src[c], float) for c in ("x1", "x2")])[ref], atol=1e-6)

    # Without --label: the label-free group map.
    rc, out, err = _run(["apply", maps_path, data_csv, "--group", "sex", "--out", tmp_path / "g.csv"], capsys)
    assert rc == 0 and "group map 'align'" in out


def _assert_error(argv, capsys, match, written=None):
    rc, out, err = _run(argv, capsys)
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxsteer: error:"), err
    assert match in lines[0], lines[0]
    if written is not None:
        assert not os.path.exists(written)


def test_fit_errors(data_csv, tmp_path, capsys):
    out = tmp_path / "m.npz"
    base = ["fit", data_csv, "--out", out]
    _assert_error(base + ["--label", "salary", "--group", "sex"], capsys, "missing column(s) ['salary']", out)
    _assert_error(base + ["--label", "colour", "--group", "sex"], capsys, "label column 'colour' is not numeric", out)
    src = io.read_csv(str(data_csv))
    one = tmp_path / "one.csv"
    _write_csv(one, list(src), [[src[c][j] if c != "sex" else "F" for c in src] for j in range(50)])
    _assert_error(["fit", one, "--label", "income", "--group", "sex", "--out", out], capsys, "has a single value 'F'", out)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    _assert_error(["fit", empty, "--label", "income", "--group", "sex", "--out", out], capsys, "the file is empty", out)
    _assert_error(base + ["--label", "income", "--group", "sex", "--reference", "X"], capsys, "--reference: 'X'", out)
    _assert_error(base + ["--label", "income", "--group", "sex", "--shrinkage", "2"], capsys, "--shrinkage", out)
    _assert_error(["fit", tmp_path / "nope.csv", "--label", "income", "--group", "sex", "--out", out], capsys, "no such file", out)


def test_apply_errors(data_csv, tmp_path, capsys):
    maps_path = tmp_path / "maps.npz"
    assert _run(["fit", data_csv, "--label", "income", "--group", "sex", "--out", maps_path], capsys)[0] == 0
    out = tmp_path / "s.csv"
    src = io.read_csv(str(data_csv))
    other = tmp_path / "other.csv"
    _write_csv(other, ["x1", "colour", "sex"], [[src["x1"][j], src["colour"][j], src["sex"][j]] for j in range(20)])
    _assert_error(["apply", maps_path, other, "--group", "sex", "--out", out], capsys, "another feature layout", out)
    unseen = tmp_path / "unseen.csv"
    _write_csv(unseen, list(src), [[src[c][j] if c != "sex" else "X" for c in src] for j in range(5)])
    _assert_error(["apply", maps_path, unseen, "--group", "sex", "--out", out], capsys, "group 'X' was not seen", out)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    _assert_error(["apply", junk, data_csv, "--group", "sex", "--out", out], capsys, "not a jaxsteer maps file", out)


def test_help_on_every_command():
    for cmd in ([], ["demo"], ["fit"], ["apply"]):
        r = subprocess.run([sys.executable, "-m", "jaxsteer", *cmd, "--help"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "usage: jaxsteer" in r.stdout, r.stderr


@pytest.mark.slow  # the demo itself runs as a CI step; this checks its pieces in isolation
def test_demo_tabular_helpers_small():
    """The demo's pieces on a tiny problem (the full demo runs in CI as its own step)."""
    from jaxsteer import demo

    res = demo.univariate_study(lambda s: None)
    rows = {r["method"]: r for r in res["rows"]}
    assert rows["original"]["eo"] > 0.1
    for name, r in rows.items():
        if name.startswith("EF"):
            assert r["eo"] < 1e-9 and r["dp"] < 1e-9 and r["kl"] > 0
    md = demo.markdown(res["rows"], [])
    assert "| EF all/affine |" in md
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = (X[:, 0] + 0.3 * rng.normal(size=400) > 0).astype(int)
    pred = demo.logistic_regression(X, y)(X)
    assert (pred == y).mean() > 0.85
