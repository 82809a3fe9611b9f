"""Seeded fuzz test of ``jaxsteer fit`` / ``apply``.

Each case writes a small random CSV (numeric and categorical columns with odd names and values, odd
labels and groups, random number formats, blank lines, quoted fields) and applies 0–2 random
mutations (a missing value, a stray token, an ID column, a duplicate header, another encoding, an
empty or one-row label × group cell, a single group, a bad label, a ragged row, an unclosed quote, a
non-finite number, an empty file, a bad ``--out``), with or without the option that handles it.

Every run must either succeed with finite output, or exit with status 2, print exactly one
``jaxsteer: error:`` line and write nothing. Each mutation also says what must happen: the error
must be one that some mutation of the case predicts, and a case that no mutation spoils must succeed,
and then ``apply`` on the same file must succeed and reproduce its rows.

Cases that succeed have 2 classes × 2 groups × 3 encoded features, so the solver compiles once for
the whole file.
"""

import contextlib
import csv
import io as _stdio
import json
import os

import numpy as np
import pytest

from jaxsteer import cli

N_CASES = 60

FEATURE_NAMES = ["x1", "x 2", "größe", "a,b", "Ω", "income_2", "q\"uote", "z"]
CATEGORIES = [("red", "blue"), ("oui", "non"), ("a,b", "c\"d"), ("été", "hiver"), ("two\nlines", "one"), ("✓", "✗")]
LABELS = [("0", "1"), ("-1", "1"), ("1.0", "2"), ("0", "1.0")]
GROUPS = [("F", "M"), ("-1", "X"), ("0", "1"), ("Grp A", "grp b"), ("Fé", "Mü"), ("✓", "日本")]
LATIN1 = {"été", "hiver", "Fé", "Mü", "größe"}  # non-ASCII values that latin-1 and cp1252 can encode
MISSING = ["", "NA", "n/a", "NaN", "?", "null", "None"]


@pytest.fixture(autouse=True)
def no_cache(monkeypatch):
    monkeypatch.setenv("JAXSTEER_CACHE_DIR", "")


def _ascii(s):
    return all(ord(c) < 128 for c in s)


def _encodable(s, encoding):
    try:
        s.encode(encoding)
        return True
    except UnicodeEncodeError:
        return False


#: Every mutation, in the order they are applied (changes of values first, then of the file's structure).
MUTATIONS = ["missing", "custom_na", "inf", "bad_label", "empty_group", "one_row_cell", "single_group", "id",
             "dup_header", "ragged", "blank_and_quotes", "unclosed_quote", "empty_file", "bad_out", "encoding"]


def make_case(seed):
    """A random CSV (header, rows), fit options and what must happen: ``expect`` lists the error
    substrings some mutation predicts (empty: the fit must succeed)."""
    rng = np.random.default_rng(seed)
    pick = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731
    chosen = set(rng.choice(MUTATIONS, size=int(rng.integers(0, 3)), replace=False).tolist())
    enc = pick(["latin-1", "cp1252", "utf-16", "utf-8-sig"]) if "encoding" in chosen else "utf-8"
    ok = (lambda v: _encodable(v, enc)) if enc in ("latin-1", "cp1252") else (lambda v: True)  # noqa: E731

    # Three encoded features in every case, so that the solver compiles once for the file. A
    # categorical column comes with a numeric one: a lone one-hot column balanced in a cell has a
    # singular covariance that Ledoit–Wolf cannot repair (an error, tested in test_cli.py).
    kinds = pick([["num", "cat"], ["num", "num", "num"], ["cat", "num"]])
    names = [str(n) for n in rng.choice([n for n in FEATURE_NAMES if ok(n)], size=len(kinds), replace=False)]
    label, group = "label", "grp"
    cats = {j: pick([c for c in CATEGORIES if all(map(ok, c))]) for j, k in enumerate(kinds) if k == "cat"}
    labels = pick(LABELS)
    # A file in latin-1 or cp1252 gets non-ASCII group names, so that reading it as UTF-8 must fail.
    groups = ("Fé", "Mü") if enc in ("latin-1", "cp1252") else pick(GROUPS)

    rows = []
    for yi in range(2):
        for gi in range(2):
            for r in range(int(rng.integers(5, 11))):  # every label × group cell has 5-10 rows
                row = []
                for j, k in enumerate(kinds):
                    if k == "num":
                        fmt = pick(["{:.6f}", "{:.3e}", " {:.4f} ", "{:.0f}.5"])
                        row.append(fmt.format(rng.normal() + 0.8 * yi + 0.5 * gi))
                    else:
                        row.append(cats[j][r % 2])  # both categories in every cell
                rows.append(row + [labels[yi], groups[gi]])
    rows = [rows[i] for i in rng.permutation(len(rows))]
    header = names + [label, group]
    num_cols = [j for j, k in enumerate(kinds) if k == "num"]
    opts, expect, missing_expect, dropna = [], [], [], False
    state = dict(encoding=enc, blank=False, content=None, header_only=False, suffix="", out="ok")

    for m in [m for m in MUTATIONS if m in chosen]:
        if m == "missing":  # at most one missing entry (dropped, a cell keeps at least 4 rows)
            rows[int(rng.integers(len(rows)))][int(rng.integers(len(header)))] = pick(MISSING)
            dropna |= bool(rng.random() < 0.5)
            missing_expect.append("has a missing value")
        elif m == "custom_na" and num_cols:
            rows[int(rng.integers(len(rows)))][pick(num_cols)] = "unknown"
            variant = pick(["none", "na", "na+dropna"])
            if variant == "none":
                expect.append("is numeric except 'unknown'")
            else:
                opts += ["--na-values", "unknown"]
                missing_expect.append("has a missing value 'unknown'")
                dropna |= variant == "na+dropna"
        elif m == "inf" and num_cols:
            rows[int(rng.integers(len(rows)))][pick(num_cols)] = pick(["inf", "-Infinity", "1e999"])
            expect.append("non-finite value")
        elif m == "bad_label":
            rows[int(rng.integers(len(rows)))][-2] = pick(["yes", "0.5", "1e400"])
            expect += ["is not numeric", "must hold integer class codes"]
        elif m == "empty_group":  # a third group with rows of one label only
            extra = [list(r) for r in rows if r[-2] == labels[0]][:3]
            for r in extra:
                r[-1] = "Zed"
            rows += extra
            expect.append("no rows with label")
        elif m == "one_row_cell":
            cell = [i for i, r in enumerate(rows) if r[-2] == labels[1] and r[-1] == groups[0]]
            rows = [r for i, r in enumerate(rows) if i not in set(cell[1:])]
            expect += ["only 1 row with label", "no rows with label"]
        elif m == "single_group":
            for r in rows:
                r[-1] = groups[0]
            expect.append("has a single value")
        elif m == "id":
            header = ["id"] + header
            rows = [[f"u{j:04d}"] + r for j, r in enumerate(rows)]
            variant = pick(["limit", "drop", "features"])
            if variant == "limit":
                opts += ["--max-categories", "8"]
                expect.append("distinct values, more than --max-categories 8")
            elif variant == "features" and not any("," in n for n in names):
                opts += ["--features", ",".join(names)]
            else:  # a name with a comma cannot be listed in --features
                opts += ["--drop", "id"]
        elif m == "dup_header":
            i, j = (int(t) for t in rng.choice(len(header), size=2, replace=False))
            header = list(header)
            header[i] = header[j]
            expect.append(f"duplicate column name {header[j]!r}")
        elif m == "ragged":
            j = int(rng.integers(len(rows)))
            rows[j] = rows[j] + ["extra"]
            expect.append("fields, the header has")
        elif m == "blank_and_quotes":
            state["blank"] = True
        elif m == "unclosed_quote":
            state["suffix"] = '1,"unclosed\n'
            expect.append("is not valid CSV")
        elif m == "empty_file":
            variant = pick(["", "\n\n", "header"])
            state["header_only"] = variant == "header"
            state["content"] = None if variant == "header" else variant
            expect += ["the file is empty", "has a header but no data rows"]
        elif m == "bad_out":
            state["out"] = pick(["is_dir", "missing_dir"])
            expect += ["is a directory", "does not exist"]
        elif m == "encoding":
            if rng.random() < 0.5 or enc == "utf-8-sig":
                opts += ["--encoding", enc]
            else:
                expect.append("is not valid utf-8")
    if dropna:
        opts.append("--dropna")
    else:
        expect += missing_expect
    return dict(header=header, rows=rows, label=label, group=group, opts=opts, expect=expect, state=state,
                chosen=sorted(chosen))


def write_case(case, path):
    st = case["state"]
    buf = _stdio.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(case["header"])
    if not st["header_only"]:
        for i, r in enumerate(case["rows"]):
            if st["blank"] and i % 5 == 2:
                buf.write("\n")
            w.writerow(r)
    text = buf.getvalue() + st["suffix"] if st["content"] is None else st["content"]
    with open(path, "wb") as fh:
        fh.write(text.encode(st["encoding"]))


def _run(argv):
    out, err = _stdio.StringIO(), _stdio.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main([str(v) for v in argv])
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def _check(rc, out, err, root, inputs, what):
    """The contract: status 0 (only warnings on stderr) or status 2 with one error line, nothing written."""
    assert rc in (0, 2), (what, rc, err)
    if rc == 2:
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("jaxsteer: error:"), (what, err)
        assert _files(root) == sorted(inputs), (what, _files(root))
        return lines[0]
    assert all(line.startswith("jaxsteer: warning:") for line in err.splitlines()), (what, err)
    return None


def _read_output(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


@pytest.mark.parametrize("seed", range(N_CASES))
def test_fuzz_fit_apply(seed, tmp_path):
    case = make_case(seed)
    data = tmp_path / "data.csv"
    write_case(case, data)
    out = tmp_path / "maps.npz"
    if case["state"]["out"] == "is_dir":
        out = tmp_path / "outdir"
        out.mkdir()
    elif case["state"]["out"] == "missing_dir":
        out = tmp_path / "nodir" / "maps.npz"
    inputs = _files(tmp_path)
    argv = ["fit", data, "--label", case["label"], "--group", case["group"], *case["opts"], "--out", out]
    rc, stdout, err = _run(argv)
    what = f"seed {seed}, mutations {case['chosen']}, options {case['opts']}"
    line = _check(rc, stdout, err, tmp_path, inputs, what)
    if case["expect"]:
        assert line is not None, f"{what}: expected an error with one of {case['expect']}, got success"
        assert any(e in line for e in case["expect"]), (what, line)
        return
    assert line is None, (what, line)

    # Success: finite maps with the user's labels, and nothing else written.
    assert _files(tmp_path) == sorted(inputs + ["maps.npz"]), _files(tmp_path)
    with np.load(out) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    for k, v in arrays.items():
        assert np.all(np.isfinite(v)), (what, k)
    na = _na_tokens(case)
    kept = [r for r in case["rows"] if not any(v.strip() in na for v in r)]
    assert sorted(meta["groups"]) == sorted({r[-1].strip() for r in kept}), what
    assert meta["rows"] == len(kept)

    # apply on the same file with the same reading options: every kept row steered, finite.
    read_opts = _reading_options(case["opts"])
    for with_label in (True, False):
        steered = tmp_path / f"steered_{with_label}.csv"
        label = ["--label", case["label"]] if with_label else []
        argv = ["apply", out, data, "--group", case["group"], *label, *read_opts, "--out", steered]
        rc, stdout, err = _run(argv)
        assert _check(rc, stdout, err, tmp_path, _files(tmp_path), what) is None, (what, err)
        table = _read_output(steered)
        assert table[0] == meta["layout"]["names"] + [case["group"]] + ([case["label"]] if with_label else [])
        assert len(table) - 1 == len(kept), what
        d = len(meta["layout"]["names"])
        body = np.array([[float(v) for v in r[:d]] for r in table[1:]])
        assert np.all(np.isfinite(body)), what
        assert [r[d] for r in table[1:]] == [r[-1].strip() for r in kept], what

    # apply on a file with a group the maps never saw (in a row that --dropna keeps): one line,
    # nothing written.
    unseen = [list(r) for r in case["rows"]]
    unseen[case["rows"].index(kept[0])][-1] = "never-seen"
    case2 = dict(case, rows=unseen)
    write_case(case2, tmp_path / "unseen.csv")
    before = _files(tmp_path)
    rc, stdout, err = _run(["apply", out, tmp_path / "unseen.csv", "--group", case["group"], *read_opts,
                            "--out", tmp_path / "u.csv"])
    line = _check(rc, stdout, err, tmp_path, before, what)
    assert line is not None and "was not seen" in line, (what, line)


def _na_tokens(case):
    """The missing-value tokens of the case's fit (the defaults plus --na-values)."""
    from jaxsteer import io

    extra = [case["opts"][i + 1] for i, o in enumerate(case["opts"]) if o == "--na-values"]
    return io.na_values(extra)


def _reading_options(opts):
    """The options of fit that apply takes too (how the file is read)."""
    out, i = [], 0
    while i < len(opts):
        if opts[i] in ("--encoding", "--na-values"):
            out += opts[i:i + 2]
            i += 2
        elif opts[i] == "--dropna":
            out.append("--dropna")
            i += 1
        else:
            i += 2 if opts[i] in ("--max-categories", "--drop", "--features") else 1
    return out


def test_the_fuzz_cases_cover_every_outcome():
    """The seeds above exercise successes and every kind of predicted error (guards the generator)."""
    cases = [make_case(s) for s in range(N_CASES)]
    assert sum(not c["expect"] for c in cases) >= 10
    chosen = {m for c in cases for m in c["chosen"]}
    assert chosen == set(MUTATIONS), set(MUTATIONS) - chosen
