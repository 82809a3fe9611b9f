"""The ``jaxsteer`` command line: fit / apply round trip on a CSV; every input that could give a
silently wrong result is a one-line error (exit status 2, nothing written) or an explicit option.

Every successful fit here has the same shape (2 classes × 2 groups × 4 encoded features), so the
solver compiles once for the whole file.
"""

import contextlib
import csv
import io as _stdio
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import jaxsteer as js
from jaxsteer import cli, io


@pytest.fixture(autouse=True)
def no_cache(monkeypatch):
    monkeypatch.setenv("JAXSTEER_CACHE_DIR", "")


HEADER = ["x1", "x2", "colour", "sex", "income"]


def _rows(n=600, seed=0, groups=("F", "M"), labels=(0, 1)):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n)
    y = (rng.random(n) < np.where(a == 1, 0.5, 0.25)).astype(int)
    x1 = rng.normal(size=n) + 1.2 * y + 0.5 * a
    x2 = rng.normal(size=n) * (1 + 0.3 * a) - 0.4 * y
    colour = np.where(rng.random(n) < 0.5 + 0.2 * y, "red", "blue")
    return [[f"{x1[j]:.6f}", f"{x2[j]:.6f}", colour[j], groups[a[j]], str(labels[y[j]])] for j in range(n)]


def _write_csv(path, header, rows, encoding="utf-8"):
    with open(path, "w", newline="", encoding=encoding) as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def data_csv(tmp_path):
    return _write_csv(tmp_path / "data.csv", HEADER, _rows())


@pytest.fixture
def out_dir(tmp_path):
    """An empty directory for outputs: a failed run must leave it empty (no temporary files either)."""
    d = tmp_path / "out"
    d.mkdir()
    return d


def _run(argv):
    """``cli.main(argv)`` in-process: ``(exit status, stdout, stderr)``."""
    out, err = _stdio.StringIO(), _stdio.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main([str(v) for v in argv])
        except SystemExit as e:  # main returns its status; this only guards the contract
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def _fit_ok(argv):
    rc, out, err = _run(["fit", *argv])
    assert rc == 0, err
    return out


def _assert_error(argv, match, out_dir=None, solved=False):
    """Exit status 2, exactly one ``jaxsteer: error:`` line on stderr containing every ``match``,
    nothing written in ``out_dir``; unless ``solved``, the error came before any solve."""
    rc, out, err = _run(argv)
    assert rc == 2, (out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxsteer: error:"), err
    for m in [match] if isinstance(match, str) else match:
        assert m in lines[0], lines[0]
    if out_dir is not None:
        assert os.listdir(out_dir) == [], os.listdir(out_dir)
    if not solved:
        assert "fitting:" not in out, out
    return lines[0]


def _maps_arrays(path):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    return json.loads(str(arrays.pop("meta"))), arrays


def _assert_same_maps(p, q, names=True):
    (mp, ap), (mq, aq) = _maps_arrays(p), _maps_arrays(q)
    assert ap.keys() == aq.keys()
    for k in ap:
        np.testing.assert_allclose(ap[k], aq[k], rtol=1e-9, atol=1e-12, err_msg=k)
    if names:
        assert mp["layout"] == mq["layout"]
    assert mp["classes"] == mq["classes"] and mp["kl"] == pytest.approx(mq["kl"], rel=1e-9)


# -- the round trip -------------------------------------------------------------------------------


def test_fit_then_apply_round_trip(data_csv, tmp_path):
    maps_path = tmp_path / "maps.npz"
    out = _fit_ok([data_csv, "--label", "income", "--group", "sex", "--out", maps_path, "--reference", "M"])
    assert "KL(ideal ‖ fitted)" in out and "converged=True" in out and "reference group 'M'" in out
    assert sorted(os.listdir(tmp_path)) == ["data.csv", "maps.npz"]  # no temporary file left
    loaded = io.load_steerer(str(maps_path))
    assert loaded.layout.names == ("x1", "x2", "colour=blue", "colour=red")
    assert loaded.layout.categories == {"colour": ["blue", "red"]}  # recorded, so apply can detect new ones
    assert loaded.meta["reference"] == "M" and loaded.meta["params"]["form"] == "affine"
    assert loaded.groups.tolist() == ["F", "M"] and loaded.classes.tolist() == [0, 1]

    steered = tmp_path / "steered.csv"
    rc, out, err = _run(["apply", maps_path, data_csv, "--group", "sex", "--label", "income", "--out", steered])
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
    rc, out, err = _run(["apply", maps_path, data_csv, "--group", "sex", "--out", tmp_path / "g.csv"])
    assert rc == 0 and "group map 'align'" in out


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Maps fitted once on the standard data, shared by the apply tests."""
    d = tmp_path_factory.mktemp("fitted")
    data = _write_csv(d / "data.csv", HEADER, _rows())
    maps = d / "maps.npz"
    rc, out, err = _run(["fit", data, "--label", "income", "--group", "sex", "--out", maps])
    assert rc == 0, err
    return maps, data


# -- the table of issue 15: each input is an error (status 2, one line, nothing written) -------------


@pytest.mark.parametrize("token", ["n/a", "", "NaN", "?", "NULL"])
def test_missing_value_in_numeric_column(tmp_path, out_dir, token):
    rows = _rows()
    rows[56][0] = token  # data row 57, line 58
    data = _write_csv(tmp_path / "na.csv", HEADER, rows)
    _assert_error(["fit", data, "--label", "income", "--group", "sex", "--out", out_dir / "m.npz"],
                  ["column 'x1'", f"missing value {token!r}", "data row 57 (line 58)", "--dropna"], out_dir)


def test_unique_id_column(tmp_path, out_dir):
    rows = [[f"u{j:05d}"] + r for j, r in enumerate(_rows())]
    data = _write_csv(tmp_path / "id.csv", ["id"] + HEADER, rows)
    _assert_error(["fit", data, "--label", "income", "--group", "sex", "--out", out_dir / "m.npz"],
                  ["column 'id' has 600 distinct values", "--max-categories 50", "--drop id"], out_dir)


def test_apply_unseen_category(fitted, tmp_path, out_dir):
    maps, _ = fitted
    rows = _rows(20, seed=1)
    rows[3][2] = "green"
    data = _write_csv(tmp_path / "new.csv", HEADER, rows)
    _assert_error(["apply", maps, data, "--group", "sex", "--out", out_dir / "s.csv"],
                  ["column 'colour'", "value 'green' at data row 4 (line 5)", "known: 'blue', 'red'", "--unknown ignore"],
                  out_dir)


def test_latin1_bytes(tmp_path, out_dir):
    rows = _rows()
    rows[5][2] = "rouge-é"
    data = _write_csv(tmp_path / "latin.csv", HEADER, rows, encoding="latin-1")
    _assert_error(["fit", data, "--label", "income", "--group", "sex", "--out", out_dir / "m.npz"],
                  ["latin.csv: line 7 is not valid utf-8 (byte 0xe9)", "--encoding latin-1"], out_dir)


def test_input_is_a_directory_or_missing(tmp_path, out_dir, fitted):
    maps, data = fitted
    (tmp_path / "adir").mkdir()
    for argv, match in [
        (["fit", tmp_path / "adir", "--label", "income", "--group", "sex", "--out", out_dir / "m.npz"], "adir: is a directory"),
        (["fit", tmp_path / "nope.csv", "--label", "income", "--group", "sex", "--out", out_dir / "m.npz"], "nope.csv: no such file"),
        (["apply", maps, tmp_path / "adir", "--group", "sex", "--out", out_dir / "s.csv"], "adir: is a directory"),
        (["apply", tmp_path / "adir", data, "--group", "sex", "--out", out_dir / "s.csv"], "adir: is a directory"),
    ]:
        _assert_error(argv, match, out_dir)


def test_out_is_a_directory(data_csv, tmp_path, out_dir, fitted):
    maps, _ = fitted
    before = sorted(os.listdir(tmp_path))
    _assert_error(["fit", data_csv, "--label", "income", "--group", "sex", "--out", out_dir], ["--out:", "is a directory"], out_dir)
    _assert_error(["apply", maps, data_csv, "--group", "sex", "--out", out_dir], ["--out:", "is a directory"], out_dir)
    assert sorted(os.listdir(tmp_path)) == before  # no temporary file next to it either


def test_out_in_missing_directory(data_csv, tmp_path, out_dir, fitted):
    maps, _ = fitted
    target = out_dir / "nodir" / "m.npz"
    _assert_error(["fit", data_csv, "--label", "income", "--group", "sex", "--out", target],
                  ["--out:", "nodir does not exist"], out_dir)
    _assert_error(["apply", maps, data_csv, "--group", "sex", "--out", target], ["--out:", "nodir does not exist"], out_dir)
    # --out may not overwrite an input either.
    _assert_error(["fit", data_csv, "--label", "income", "--group", "sex", "--out", data_csv], "is the input file")
    _assert_error(["apply", maps, data_csv, "--group", "sex", "--out", maps], "is the input file")


# -- messages with the user's labels; file structure ------------------------------------------------


def test_empty_cell_named_with_user_labels(tmp_path, out_dir):
    rows = _rows(groups=("-1", "X"))
    rows = [r for r in rows if not (r[3] == "X" and r[4] == "1")]
    data = _write_csv(tmp_path / "cell.csv", HEADER, rows)
    _assert_error(["fit", data, "--label", "income", "--group", "sex", "--out", out_dir / "m.npz"],
                  ["no rows with label 1 in group 'X'", "--group 'sex'"], out_dir)
    rows = _rows(labels=(-1, 1))
    rows = [r for r in rows if not (r[3] == "F" and r[4] == "-1")] + [[r for r in rows if r[3] == "F" and r[4] == "-1"][0]]
    data = _write_csv(tmp_path / "cell1.csv", HEADER, rows)
    _assert_error(["fit", data, "--label", "income", "--group", "sex", "--out", out_dir / "m.npz"],
                  "only 1 row with label -1 in group 'F'", out_dir)


def test_missing_group_or_label_value(tmp_path, out_dir):
    rows = _rows()
    rows[10][3] = ""
    data = _write_csv(tmp_path / "g.csv", HEADER, rows)
    _assert_error(["fit", data, "--label", "income", "--group", "sex", "--out", out_dir / "m.npz"],
                  ["--group column 'sex' has a missing value ''", "data row 11"], out_dir)
    rows = _rows()
    rows[20][4] = "NA"
    data = _write_csv(tmp_path / "y.csv", HEADER, rows)
    _assert_error(["fit", data, "--label", "income", "--group", "sex", "--out", out_dir / "m.npz"],
                  ["--label column 'income' has a missing value 'NA'", "data row 21"], out_dir)


def test_cell_errors_name_user_labels(tmp_path, out_dir):
    rows = _rows(groups=("-1", "X"))
    for r in rows:
        if r[3] == "X" and r[4] == "0":
            r[0], r[1], r[2] = "1.5", "2.5", "red"
    data = _write_csv(tmp_path / "flat.csv", HEADER, rows)
    _assert_error(["fit", data, "--label", "income", "--group", "sex", "--out", out_dir / "m.npz"],
                  "rows with label 0 in group 'X' are identical in every feature", out_dir)
    # No shrinkage with a one-hot column: a singular covariance, said before solving.
    data = _write_csv(tmp_path / "d.csv", HEADER, _rows(groups=("-1", "X")))
    _assert_error(["fit", data, "--label", "income", "--group", "sex", "--shrinkage", "none", "--out", out_dir / "m.npz"],
                  ["--shrinkage none", "label 0 in group '-1'", "singular", "one-hot"], out_dir)
    # A lone binary column, balanced within a cell: every row has the same centred outer product, so
    # the Ledoit–Wolf intensity is 0 and the one-hot covariance stays singular.
    rows = [[c, g, y] for g in ("-1", "X") for y in ("0", "1") for c in ("red", "blue") * 3]
    data = _write_csv(tmp_path / "lone.csv", ["colour", "sex", "income"], rows)
    _assert_error(["fit", data, "--label", "income", "--group", "sex", "--out", out_dir / "m.npz"],
                  ["rows with label 0 in group '-1' (6 rows, d=2 encoded features) do not determine a covariance",
                   "--shrinkage with a number"], out_dir)


def test_file_structure_errors(tmp_path, out_dir):
    fit = ["--label", "income", "--group", "sex", "--out", out_dir / "m.npz"]
    dup = _write_csv(tmp_path / "dup.csv", ["x1", "x1", "colour", "sex", "income"], _rows(20))
    _assert_error(["fit", dup, *fit], "duplicate column name 'x1' in the header (fields 1 and 2)", out_dir)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    _assert_error(["fit", empty, *fit], "the file is empty", out_dir)
    blank = tmp_path / "blank.csv"
    blank.write_text("\n\n  \n")
    _assert_error(["fit", blank, *fit], "the file is empty", out_dir)
    header = _write_csv(tmp_path / "header.csv", HEADER, [])
    _assert_error(["fit", header, *fit], "has a header but no data rows", out_dir)
    ragged = _write_csv(tmp_path / "ragged.csv", HEADER, _rows(10)[:5] + [["1", "2", "red", "F", "0", "extra"]])
    _assert_error(["fit", ragged, *fit], "line 7 (data row 6) has 6 fields, the header has 5", out_dir)
    quote = tmp_path / "quote.csv"
    quote.write_text("x1,x2,colour,sex,income\n1,2,\"red,F,0\n3,4,blue,M,1\n")
    _assert_error(["fit", quote, *fit], "row starting at line 2 is not valid CSV", out_dir)
    unnamed = _write_csv(tmp_path / "unnamed.csv", ["", *HEADER], [[str(j)] + r for j, r in enumerate(_rows(10))])
    _assert_error(["fit", unnamed, *fit], "header field 1 (line 1) is empty", out_dir)


def test_fit_errors(data_csv, tmp_path, out_dir):
    out = out_dir / "m.npz"
    base = ["fit", data_csv, "--out", out]
    _assert_error(base + ["--label", "salary", "--group", "sex"], "missing column(s) ['salary']", out_dir)
    _assert_error(base + ["--label", "colour", "--group", "sex"],
                  ["label column 'colour' is not numeric", "at data row 1 (line 2)"], out_dir)
    src = io.read_csv(str(data_csv))
    one = _write_csv(tmp_path / "one.csv", list(src), [[src[c][j] if c != "sex" else "F" for c in src] for j in range(50)])
    _assert_error(["fit", one, "--label", "income", "--group", "sex", "--out", out], "has a single value 'F'", out_dir)
    _assert_error(base + ["--label", "income", "--group", "sex", "--reference", "X"], "--reference: 'X'", out_dir)
    _assert_error(base + ["--label", "income", "--group", "sex", "--shrinkage", "2"], "--shrinkage", out_dir)
    _assert_error(base + ["--label", "income", "--group", "income"], "--label and --group name the same column", out_dir)
    _assert_error(base + ["--label", "income", "--group", "sex", "--drop", "nope"], "--drop: no column(s) ['nope']", out_dir)
    _assert_error(base + ["--label", "income", "--group", "sex", "--categorical", "sex"], "--categorical: ['sex']", out_dir)
    _assert_error(base + ["--label", "income", "--group", "sex", "--encoding", "klingon"], "--encoding: unknown encoding", out_dir)
    # argparse's own errors are one line too.
    _assert_error(base + ["--label", "income", "--group", "sex", "--max-categories", "0"], "--max-categories", out_dir)
    _assert_error(["fit", data_csv, "--label", "income"], "required: --group, --out", out_dir)
    rows = _rows()
    rows[99][1] = "twelve"
    mixed = _write_csv(tmp_path / "mixed.csv", HEADER, rows)
    _assert_error(["fit", mixed, "--label", "income", "--group", "sex", "--out", out],
                  ["column 'x2' is numeric except 'twelve' at data row 100", "--na-values 'twelve'", "--categorical x2"], out_dir)
    rows = _rows()
    rows[7][0] = "inf"
    _assert_error(["fit", _write_csv(tmp_path / "inf.csv", HEADER, rows), "--label", "income", "--group", "sex", "--out", out],
                  "column 'x1' has the non-finite value 'inf' at data row 8", out_dir)


def test_apply_errors(fitted, tmp_path, out_dir):
    maps_path, data = fitted
    out = out_dir / "s.csv"
    src = io.read_csv(str(data))
    other = _write_csv(tmp_path / "other.csv", ["x1", "colour", "sex"],
                       [[src["x1"][j], src["colour"][j], src["sex"][j]] for j in range(20)])
    _assert_error(["apply", maps_path, other, "--group", "sex", "--out", out], "another feature layout", out_dir)
    unseen = _write_csv(tmp_path / "unseen.csv", list(src), [[src[c][j] if c != "sex" else "X" for c in src] for j in range(5)])
    _assert_error(["apply", maps_path, unseen, "--group", "sex", "--out", out], ["group 'X' at data row 1", "was not seen"], out_dir)
    rows = _rows(20, seed=2)
    rows[4][4] = "7"
    lab = _write_csv(tmp_path / "lab.csv", HEADER, rows)
    _assert_error(["apply", maps_path, lab, "--group", "sex", "--label", "income", "--out", out], "label '7' at data row 5", out_dir)
    rows = _rows(20, seed=2)
    rows[2][1] = "n/a"
    na = _write_csv(tmp_path / "na.csv", HEADER, rows)
    _assert_error(["apply", maps_path, na, "--group", "sex", "--out", out],
                  ["column 'x2' has a missing value 'n/a'", "data row 3"], out_dir)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    _assert_error(["apply", junk, data, "--group", "sex", "--out", out], "not a jaxsteer maps file", out_dir)
    _assert_error(["apply", maps_path, data, "--group", "x1", "--out", out], "--group: column 'x1' is a feature of the maps", out_dir)


# -- the options ------------------------------------------------------------------------------------


def test_dropna_equals_the_cleaned_file(tmp_path):
    rows = _rows()
    clean = [r for j, r in enumerate(rows) if j not in (3, 56, 200)]
    rows[3][0], rows[56][2], rows[200][3] = "n/a", "", "?"  # a feature, a categorical, the group
    dirty = _write_csv(tmp_path / "dirty.csv", HEADER, rows)
    cleaned = _write_csv(tmp_path / "clean.csv", HEADER, clean)
    out = _fit_ok([dirty, "--label", "income", "--group", "sex", "--dropna", "--out", tmp_path / "a.npz"])
    assert "--dropna: dropped 3 of 600 rows" in out and "'x1': 1, 'colour': 1, 'sex': 1" in out
    _fit_ok([cleaned, "--label", "income", "--group", "sex", "--out", tmp_path / "b.npz"])
    _assert_same_maps(tmp_path / "a.npz", tmp_path / "b.npz")
    meta, _ = _maps_arrays(tmp_path / "a.npz")
    assert meta["rows"] == 597 and meta["dropped_rows"] == 3


def test_na_values_adds_missing_tokens(tmp_path, out_dir):
    rows = _rows()
    clean = [r for j, r in enumerate(rows) if j not in (9, 19)]
    rows[9][0], rows[19][1] = "unknown", "-999"  # a word and a numeric sentinel
    dirty = _write_csv(tmp_path / "dirty.csv", HEADER, rows)
    cleaned = _write_csv(tmp_path / "clean.csv", HEADER, clean)
    fit = [dirty, "--label", "income", "--group", "sex"]
    _assert_error(["fit", *fit, "--out", out_dir / "m.npz"], "column 'x1' is numeric except 'unknown' at data row 10", out_dir)
    _assert_error(["fit", *fit, "--na-values", "unknown", "--out", out_dir / "m.npz"],
                  "column 'x1' has a missing value 'unknown' at data row 10", out_dir)
    _assert_error(["fit", *fit, "--na-values", "unknown,-999", "--out", out_dir / "m.npz"],
                  "column 'x1' has a missing value 'unknown' at data row 10", out_dir)
    out = _fit_ok([*fit, "--na-values", "unknown", "--na-values", "-999", "--dropna", "--out", tmp_path / "a.npz"])
    assert "dropped 2 of 600 rows" in out
    _fit_ok([cleaned, "--label", "income", "--group", "sex", "--out", tmp_path / "b.npz"])
    _assert_same_maps(tmp_path / "a.npz", tmp_path / "b.npz")
    # The tokens are saved with the maps and mean "missing" in apply too.
    assert io.load_steerer(str(tmp_path / "a.npz")).meta["na_values"] == ["-999", "unknown"]
    _assert_error(["apply", tmp_path / "a.npz", dirty, "--group", "sex", "--out", out_dir / "s.csv"],
                  "column 'x1' has a missing value 'unknown'", out_dir)
    rc, out, err = _run(["apply", tmp_path / "a.npz", dirty, "--group", "sex", "--dropna", "--out", out_dir / "s.csv"])
    assert rc == 0, err
    assert "dropped 2 of 600 rows" in out and len(io.read_csv(str(out_dir / "s.csv"))["sex"]) == 598


def test_drop_and_max_categories(tmp_path, out_dir, fitted):
    maps, data = fitted
    rows = [[f"u{j:05d}"] + r for j, r in enumerate(_rows())]
    with_id = _write_csv(tmp_path / "id.csv", ["id"] + HEADER, rows)
    _fit_ok([with_id, "--label", "income", "--group", "sex", "--drop", "id", "--out", tmp_path / "a.npz"])
    _assert_same_maps(tmp_path / "a.npz", maps)
    # The limit applies to every categorical column: 'colour' has 2 values.
    _assert_error(["fit", data, "--label", "income", "--group", "sex", "--max-categories", "1", "--out", out_dir / "m.npz"],
                  ["column 'colour' has 2 distinct values", "--max-categories 1"], out_dir)


def test_categorical_codes(tmp_path, fitted):
    maps, _ = fitted
    rows = _rows()
    for r in rows:
        r[2] = {"blue": "1", "red": "2"}[r[2]]  # the same column as numeric-looking codes
    codes = _write_csv(tmp_path / "codes.csv", HEADER, rows)
    _fit_ok([codes, "--label", "income", "--group", "sex", "--categorical", "colour", "--out", tmp_path / "a.npz"])
    _assert_same_maps(tmp_path / "a.npz", maps, names=False)
    assert io.load_steerer(str(tmp_path / "a.npz")).layout.names == ("x1", "x2", "colour=1", "colour=2")


def test_unknown_ignore(fitted, tmp_path):
    maps, _ = fitted
    rows = _rows(20, seed=1)
    rows[3][2] = "green"
    rows[7][2] = "green"
    data = _write_csv(tmp_path / "new.csv", HEADER, rows)
    rc, out, err = _run(["apply", maps, data, "--group", "sex", "--unknown", "ignore", "--out", tmp_path / "s.csv"])
    assert rc == 0, err
    assert "--unknown ignore" in out and "'colour' (e.g. 'green', 2 rows)" in out
    loaded = io.load_steerer(str(maps))
    src = io.read_csv(str(data))
    X = loaded.layout.encode(src, unknown="ignore")
    assert np.all(X[[3, 7]][:, 2:] == 0)  # all-zero indicators
    want = loaded.layout.decode(loaded.transform(X, np.array(src["sex"])))  # labels; the CLI passes codes
    got = io.read_csv(str(tmp_path / "s.csv"))
    np.testing.assert_allclose(np.column_stack([np.array(got[c], float) for c in loaded.layout.names]), want, rtol=1e-12)


def test_loaded_maps_take_labels_like_a_steerer(tmp_path):
    """LoadedMaps.transform takes the user's labels (as Steerer.transform does); transform_codes
    takes positions in .groups/.classes. Both agree with the fitted Steerer, computed in memory."""
    rng = np.random.default_rng(3)
    n = 400
    y = rng.integers(0, 2, n)
    a = rng.choice(np.array(["X", "-1"]), n)
    X = rng.normal(size=(n, 2)) + np.c_[y, (a == "X") * 1.0]
    st = js.Steerer(map="moment").fit(X, y, a)
    layout = io.FeatureLayout.fit({"x1": [str(v) for v in X[:, 0]], "x2": [str(v) for v in X[:, 1]]}, ["x1", "x2"])
    path = str(tmp_path / "m.npz")
    io.save_steerer(path, st, layout)
    loaded = io.load_steerer(path)
    assert loaded.groups.tolist() == ["-1", "X"]
    np.testing.assert_allclose(loaded.transform(X, a), st.transform(X, a), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(loaded.transform(X, a, y), st.transform(X, a, y), rtol=1e-10, atol=1e-12)
    codes = (a == "X").astype(int)
    np.testing.assert_allclose(loaded.transform_codes(X, codes, y), st.transform(X, a, y), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match=r"a: value 'Z' \(entry 0\) was not seen in fit"):
        loaded.transform(X[:1], np.array(["Z"]))
    with pytest.raises(ValueError, match="a_codes:"):
        loaded.transform_codes(X[:1], np.array([2]))


def test_encoding_option(tmp_path):
    rows = _rows(groups=("Fé", "Mü"))
    utf8 = _write_csv(tmp_path / "u.csv", HEADER, rows)
    latin = _write_csv(tmp_path / "l.csv", HEADER, rows, encoding="latin-1")
    bom = _write_csv(tmp_path / "b.csv", HEADER, rows, encoding="utf-8-sig")  # Excel's "CSV UTF-8"
    fit = ["--label", "income", "--group", "sex"]
    _fit_ok([utf8, *fit, "--out", tmp_path / "u.npz"])
    out = _fit_ok([latin, *fit, "--encoding", "latin-1", "--out", tmp_path / "l.npz"])
    assert "groups ['Fé', 'Mü']" in out
    _fit_ok([bom, *fit, "--out", tmp_path / "b.npz"])
    _assert_same_maps(tmp_path / "u.npz", tmp_path / "l.npz")
    _assert_same_maps(tmp_path / "u.npz", tmp_path / "b.npz")
    rc, out, err = _run(["apply", tmp_path / "u.npz", latin, "--group", "sex", "--encoding", "latin-1", "--out", tmp_path / "s.csv"])
    assert rc == 0, err
    assert io.read_csv(str(tmp_path / "s.csv"))["sex"][:2] == [r[3] for r in rows[:2]]  # written as UTF-8


def test_old_maps_files_still_apply(fitted, tmp_path):
    """Maps files saved before the missing-value tokens were recorded apply with the defaults."""
    maps, data = fitted
    meta, arrays = _maps_arrays(maps)
    for key in ("na_values", "encoding", "rows", "dropped_rows"):
        meta.pop(key)
    old = tmp_path / "old.npz"
    np.savez_compressed(old, meta=np.array(json.dumps(meta)), **arrays)
    for m, name in ((maps, "new.csv"), (old, "old.csv")):
        rc, out, err = _run(["apply", m, data, "--group", "sex", "--label", "income", "--out", tmp_path / name])
        assert rc == 0, err
    assert (tmp_path / "new.csv").read_text() == (tmp_path / "old.csv").read_text()


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "t.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with io.atomic_write(str(target), "w") as fh:
            fh.write("partial")
            raise RuntimeError("disk full")
    assert os.listdir(tmp_path) == ["t.csv"] and target.read_text() == "old"
    with io.atomic_write(str(tmp_path / "n.csv"), "w") as fh:
        fh.write("new")
    assert sorted(os.listdir(tmp_path)) == ["n.csv", "t.csv"] and (tmp_path / "n.csv").read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "n.csv").st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_help_on_every_command():
    for cmd in ([], ["demo"], ["fit"], ["apply"]):
        r = subprocess.run([sys.executable, "-m", "jaxsteer", *cmd, "--help"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "usage: jaxsteer" in r.stdout, r.stderr
    r = subprocess.run([sys.executable, "-m", "jaxsteer", "fit", "x.csv"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and r.stderr.startswith("jaxsteer: error:"), r.stderr


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


# -- the persistent compilation cache ---------------------------------------------------------------


def test_no_persistent_cache_on_cpu(tmp_path):
    """Cached XLA:CPU programs crash jaxlib when loaded back, so a CPU run never uses the cache,
    whatever JAXSTEER_CACHE_DIR says; checked in a fresh interpreter, where the flag starts unset."""
    code = "from jaxsteer import cli; cli._setup_jax(); import jax; print(repr(jax.config.jax_compilation_cache_dir))"
    env = dict(os.environ, JAXSTEER_CACHE_DIR=str(tmp_path / "cache"), JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"
    assert not (tmp_path / "cache").exists()


def test_persistent_cache_dir_is_keyed_by_versions_and_device():
    import jax
    import jaxlib

    assert cli.persistent_cache_dir(None, "cpu") is None
    assert cli.persistent_cache_dir("/somewhere", "cpu") is None
    assert cli.persistent_cache_dir("", "gpu") is None  # empty turns it off
    path = cli.persistent_cache_dir("/somewhere", "gpu")
    parent, leaf = os.path.split(path)
    assert parent == "/somewhere"
    assert f"jax{jax.__version__}" in leaf and f"jaxlib{jaxlib.__version__}" in leaf and "-gpu-" in leaf
    assert all(c.isalnum() or c in ".-_" for c in leaf)
    default = cli.persistent_cache_dir(None, "tpu")
    assert os.path.dirname(default) == os.path.join(os.path.expanduser("~"), ".cache", "jaxsteer", "xla")
