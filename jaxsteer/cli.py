"""The ``jaxsteer`` command line (also ``python -m jaxsteer``).

    jaxsteer demo [--out DIR]                      the embedded study: univariate case, Adult, COMPAS
    jaxsteer fit DATA.csv --label COL --group COL [--features COLS] [--drop COLS] [--categorical COLS]
                 [--max-categories N] [--na-values TOKENS] [--dropna] [--encoding ENC]
                 [--intervention I] [--form F] [--map M] [--shrinkage S] [--reference G] --out MAPS.npz
    jaxsteer apply MAPS.npz DATA.csv --group COL [--label COL] [--unknown {error,ignore}]
                 [--na-values TOKENS] [--dropna] [--encoding ENC] --out STEERED.csv

Input that could give a silently wrong result is an error unless an option says what to do: a
missing value (``--dropna``, ``--na-values``), a numeric column with a stray token
(``--na-values``, ``--categorical``), a categorical column with more than 50 values
(``--max-categories``, ``--drop``), a category at ``apply`` not seen at ``fit`` (``--unknown``),
bytes that are not valid in the encoding (``--encoding``). Every bad input (a missing column or
file, a directory, a non-numeric label, a single group, a label × group cell with fewer than 2 rows,
an empty file, duplicate header names, an unwritable ``--out``, a maps file from another feature
layout, ...) prints one line ``jaxsteer: error: ...`` naming the argument, the column, the user's
value and its row, and exits with status 2. ``--out`` is checked before any work, and output files
are written atomically (a temporary file in the same directory, renamed; removed on any failure), so
a failed run writes nothing.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time


class UsageError(Exception):
    """A user-facing input problem: one line, exit status 2."""


def _setup_jax():
    import jax

    jax.config.update("jax_enable_x64", True)
    cache = persistent_cache_dir(os.environ.get("JAXSTEER_CACHE_DIR"), jax.default_backend())
    if cache:
        try:
            os.makedirs(cache, exist_ok=True)
            jax.config.update("jax_compilation_cache_dir", cache)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
        except (OSError, AttributeError):  # read-only home or an older jax: run without a cache
            pass


def persistent_cache_dir(setting: "str | None", backend: str) -> "str | None":
    """The folder for JAX's persistent compilation cache, or None for no cache.

    On CPU there is none: XLA:CPU programs loaded back from the cache crash jaxlib (a second
    ``jaxsteer demo`` run with a warm cache ends in a segmentation fault, after ``cpu_aot_loader``
    errors on stderr), so CPU runs compile afresh. On an accelerator the cache lives under
    ``JAXSTEER_CACHE_DIR`` (default ``~/.cache/jaxsteer/xla``; empty turns it off), in a subfolder
    named by the jax and jaxlib versions and the device kind, so that installs and machines that
    share a home folder never load each other's programs.
    """
    if backend == "cpu" or setting == "":
        return None
    import jax
    import jaxlib

    base = setting or os.path.join(os.path.expanduser("~"), ".cache", "jaxsteer", "xla")
    try:
        kind = jax.devices()[0].device_kind
    except Exception:  # noqa: BLE001 - a backend without devices: key by the backend alone
        kind = backend
    key = f"jax{jax.__version__}-jaxlib{jaxlib.__version__}-{backend}-{kind}"
    return os.path.join(base, "".join(c if c.isalnum() or c in ".-_" else "_" for c in key))


# -- demo -------------------------------------------------------------------------------------------


#: The demo's programs are small and each runs a few times, so compiling dominates its wall time; XLA's
#: backend optimisations make the compiles much slower and the runs no faster there (idle 2-core CPU:
#: 141 s -> 88 s, the same KLs to 1e-14). A user's own setting of the flag wins.
DEMO_XLA_FLAG = "--xla_backend_optimization_level=0"


def _demo_compile_flags() -> None:
    """Add :data:`DEMO_XLA_FLAG` to ``XLA_FLAGS`` unless the user set that option (read by XLA when
    its CPU backend starts, so this runs before the demo's first computation)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " " + DEMO_XLA_FLAG).strip()


def _demo(args) -> int:
    _demo_compile_flags()
    _setup_jax()
    from jaxsteer import demo

    datasets = tuple(s.strip() for s in args.datasets.split(",") if s.strip())
    unknown = [d for d in datasets if d not in ("adult", "compas")]
    if unknown:
        raise UsageError(f"--datasets: unknown dataset(s) {unknown}; choose from adult, compas.")
    print("jaxsteer demo: nearest ideal distributions and steering (float64, CPU)\n", flush=True)
    res = demo.run(args.out, datasets=datasets, n_components=args.components, quiet=args.quiet)
    print()
    print(res["markdown"])
    return 0


# -- shared by fit and apply ------------------------------------------------------------------------


def _split(values) -> list[str]:
    """Values of a repeatable, comma-separated option (``--drop a,b --drop c``) as a list."""
    return [v.strip() for chunk in (values or []) for v in chunk.split(",") if v.strip()]


def _check_out(path: str, inputs=(), example: str = "out") -> None:
    """Fail before any work if ``--out`` cannot be written: a directory, a missing or unwritable
    parent directory, something that is not a regular file, or one of the input files."""
    if not path:
        raise UsageError("--out: empty file name.")
    if os.path.isdir(path):
        raise UsageError(f"--out: {path} is a directory; give a file name, e.g. {os.path.join(path, example)}.")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        what = "is not a directory" if os.path.exists(parent) else "does not exist; create it first"
        raise UsageError(f"--out: {parent} {what}.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out: cannot write to directory {parent} (permission denied).")
    if os.path.lexists(path):
        if not os.path.isfile(path):
            raise UsageError(f"--out: {path} exists and is not a regular file.")
        for inp in inputs:
            if os.path.isfile(inp) and os.path.samefile(path, inp):
                raise UsageError(f"--out: {path} is the input file {inp}; choose another name.")


def _write(path: str, write) -> None:
    """``write(path)`` (an atomic writer), a failed write reported as one line naming ``--out``."""
    try:
        write(path)
    except OSError as e:
        raise UsageError(f"--out: cannot write {path} ({e.strerror or e}).") from None


def _label_values(tab, col: str) -> "np.ndarray":
    """The label column as ``int64`` class values; errors name the first bad entry and its row."""
    import numpy as np

    vals = []
    for j, v in enumerate(tab[col]):
        try:
            x = float(v)
        except ValueError:
            raise UsageError(
                f"{tab.path}: label column {col!r} is not numeric ({v!r} at {tab.where(j)}); the label must hold "
                "integer class codes (e.g. 0/1)."
            ) from None
        if not (np.isfinite(x) and x == round(x) and abs(x) < 2.0**53):
            raise UsageError(f"{tab.path}: label column {col!r} must hold integer class codes; found {v!r} at {tab.where(j)}.")
        vals.append(int(x))
    return np.asarray(vals, dtype=np.int64)


def _report_dropped(tab_before, tab_after, counts) -> None:
    if counts:
        per = ", ".join(f"{c!r}: {k}" for c, k in counts.items())
        print(
            f"--dropna: dropped {tab_before.n - tab_after.n} of {tab_before.n} rows with a missing value "
            f"(missing entries per column: {per})",
            flush=True,
        )
    if tab_after.n == 0:
        raise UsageError(f"{tab_before.path}: every row has a missing value; nothing is left after --dropna.")


# -- fit --------------------------------------------------------------------------------------------


def _fit(args) -> int:
    import numpy as np

    from jaxsteer import io

    path = args.data
    shrinkage = _shrinkage(args.shrinkage)
    if args.label == args.group:
        raise UsageError(f"--label and --group name the same column {args.label!r}.")
    _check_out(args.out, inputs=[args.data], example="maps.npz")
    extra_na = _split(args.na_values)
    na = io.na_values(extra_na)
    tab = io.read_csv(path, encoding=args.encoding)
    needed = [args.label, args.group]
    io.require_columns(tab, needed, path)
    drop = _split(args.drop)
    absent = [c for c in drop if c not in tab]
    if absent:
        raise UsageError(f"--drop: no column(s) {absent} in {path}; available: {list(tab)}.")
    if set(drop) & set(needed):
        raise UsageError(f"--drop: {sorted(set(drop) & set(needed))} is the label or group column.")
    if args.features:
        features = _split([args.features])
        io.require_columns(tab, features, path)
        clash = [c for c in features if c in needed]
        if clash:
            raise UsageError(f"--features: {clash} is the label or group column.")
        both = [c for c in features if c in drop]
        if both:
            raise UsageError(f"--drop: {both} also listed in --features; keep it in one of them.")
    else:
        features = [c for c in tab if c not in needed and c not in drop]
    if not features:
        raise UsageError(f"{path}: no feature columns besides the label and group.")
    categorical = _split(args.categorical)
    stray = [c for c in categorical if c not in features]
    if stray:
        raise UsageError(f"--categorical: {stray} is not a feature column (features: {features}).")

    roles = {args.label: f"--label column {args.label!r}", args.group: f"--group column {args.group!r}"}
    full = tab
    tab, counts = io.missing_values(full, features + needed, na, roles=roles, drop=args.dropna)
    _report_dropped(full, tab, counts)
    y = _label_values(tab, args.label)
    groups = np.asarray(tab[args.group])
    # Codes are positions in the sorted values (the Steerer's own convention), so the steerer is fitted
    # on codes and every message below can name the user's labels.
    classes, yc = np.unique(y, return_inverse=True)
    group_values, ac = np.unique(groups, return_inverse=True)
    if len(group_values) < 2:
        raise UsageError(f"{path}: group column {args.group!r} has a single value {str(groups[0])!r}; need at least 2 groups.")
    if len(classes) < 2:
        raise UsageError(f"{path}: label column {args.label!r} has a single class {int(classes[0])}; need at least 2.")
    ref = None
    if args.reference is not None:
        hits = np.flatnonzero(group_values == args.reference)
        if hits.size == 0:
            raise UsageError(
                f"--reference: {args.reference!r} is not a value of the group column {args.group!r} "
                f"(values: {group_values.tolist()})."
            )
        ref = int(hits[0])
    layout = io.FeatureLayout.fit(tab, features, path, na=na, max_categories=args.max_categories, categorical=categorical)
    X = layout.encode(tab, path, na=na)
    _check_cells(X, yc, ac, classes, group_values, args, shrinkage, layout)

    _setup_jax()
    import warnings

    import jaxsteer as js

    t = time.perf_counter()
    print(f"fitting: {X.shape[0]} rows, {X.shape[1]} encoded features, groups {group_values.tolist()} ...", flush=True)
    st = js.Steerer(
        intervention=args.intervention, form=args.form, map=args.map, shrinkage=shrinkage, reference=ref,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            st.fit(X, yc, ac)
        except ValueError as e:
            raise UsageError(_relabel(str(e).splitlines()[0], classes, group_values)) from None
    # Give the fitted steerer the user's labels (codes stay positions in them) for its report and
    # the saved file.
    st.reference_ = str(group_values[int(st.reference_)])
    st.classes_, st.groups_ = classes, group_values
    for w in caught:
        print(f"jaxsteer: warning: {str(w.message).splitlines()[0]}", file=sys.stderr, flush=True)
    sol = st.solution_
    solved = [sol.kl, sol.target.priors, sol.target.means, sol.target.covs, sol.maps.A, sol.maps.b, sol.weights]
    if not all(np.all(np.isfinite(np.asarray(v))) for v in solved):
        raise UsageError(
            f"{path}: the solver returned non-finite maps (status {io._solve_status(sol)}); check the features for "
            "extreme values or columns that duplicate one another."
        )
    print(f"solved in {time.perf_counter() - t:.1f} s\n")
    print(st.report())
    extra = dict(
        label=args.label, group=args.group, source=os.path.basename(path), encoding=args.encoding,
        na_values=sorted(set(extra_na)), rows=int(tab.n), dropped_rows=int(full.n - tab.n),
    )
    _write(args.out, lambda p: io.save_steerer(p, st, layout, extra=extra))
    print(f"\nwrote {args.out}")
    return 0


def _check_cells(X, yc, ac, classes, groups, args, shrinkage, layout) -> None:
    """Every label × group cell must allow a covariance estimate; errors name the user's labels."""
    import numpy as np

    k, m, d = len(classes), len(groups), X.shape[1]
    counts = np.zeros((k, m), dtype=np.int64)
    np.add.at(counts, (yc, ac), 1)

    def cell(i, g):
        return f"label {int(classes[i])} in group {str(groups[g])!r}"

    def more(n):
        return f" (and {n} more label × group cell{'s' if n > 1 else ''})" if n else ""

    few = np.argwhere(counts < 2)
    if few.size:
        i, g = few[0]
        n = counts[i, g]
        rows = "no rows" if n == 0 else "only 1 row"
        raise UsageError(
            f"{args.data}: {rows} with {cell(i, g)} (--label {args.label!r}, --group {args.group!r}){more(len(few) - 1)}; "
            "every label × group cell needs at least 2 rows to estimate its covariance. Collect more data, merge "
            "rare groups, or drop that group's rows."
        )
    flat = [(i, g) for i in range(k) for g in range(m) if np.ptp(X[(yc == i) & (ac == g)], axis=0).max() == 0]
    if flat:
        i, g = flat[0]
        raise UsageError(
            f"{args.data}: the {counts[i, g]} rows with {cell(i, g)} are identical in every feature{more(len(flat) - 1)}; "
            "no covariance can be estimated. Collect more data or drop that group's rows."
        )
    # The covariance each cell gets in jaxsteer.estimate (sample covariance, ddof 1, shrunk towards
    # (tr/d)·I) must pass the family's positive-definiteness test (smallest/largest eigenvalue above
    # 100·d·eps); checked here so that a failure names the user's labels, before any solve.
    floor = 100.0 * d * np.finfo(np.float64).eps
    for i in range(k):
        for g in range(m):
            Xc = X[(yc == i) & (ac == g)]
            Z = Xc - Xc.mean(axis=0)
            cov = Z.T @ Z / (len(Xc) - 1)
            s = _ledoit_wolf(Z) if shrinkage == "ledoit_wolf" else float(shrinkage or 0.0)
            cov = (1.0 - s) * cov + s * (np.trace(cov) / d) * np.eye(d)
            eig = np.linalg.eigvalsh(cov)
            if eig[0] > floor * eig[-1] and eig[-1] > 0:
                continue
            where = f"{cell(i, g)} ({counts[i, g]} rows, d={d} encoded features)"
            if shrinkage == "ledoit_wolf":
                raise UsageError(
                    f"{args.data}: the rows with {where} do not determine a covariance and their Ledoit–Wolf "
                    f"shrinkage is {s:.2g} (too few or degenerate rows); collect more rows for that cell, drop "
                    "features, or pass --shrinkage with a number in (0, 1]."
                )
            why = "; one-hot columns always make it so" if layout.categories else ""
            raise UsageError(
                f"--shrinkage {args.shrinkage}: the covariance of {where} is singular{why}. Use --shrinkage "
                "ledoit_wolf (the default) or a number in (0, 1]."
            )


def _ledoit_wolf(Z) -> float:
    """Ledoit–Wolf intensity of centred rows ``Z [n, d]``, as ``jaxsteer.estimate.ledoit_wolf_intensity``
    computes it for one cell with unit weights (0 for d = 1 or a covariance already ∝ I)."""
    import numpy as np

    n, d = Z.shape
    if d == 1:
        return 0.0
    sig = Z.T @ Z / n
    fro2 = float(np.sum(sig * sig))
    delta = (fro2 - np.trace(sig) ** 2 / d) / d
    if delta <= 0:
        return 0.0
    beta = (float(np.sum(np.sum(Z * Z, axis=1) ** 2)) / n - fro2) / (d * n)
    return float(np.clip(min(beta, delta) / delta, 0.0, 1.0))


def _relabel(msg: str, classes, groups) -> str:
    """A Steerer message about cells ``class i, group g`` / ``covs[i, g]`` (codes) in the user's labels."""
    import re

    def cell(mo):
        i, g = int(mo.group(1)), int(mo.group(2))
        if i < len(classes) and g < len(groups):
            return f"label {int(classes[i])} in group {str(groups[g])!r}"
        return mo.group(0)

    msg = re.sub(r"covs\[(\d+), (\d+)\]", lambda mo: "the covariance of " + cell(mo), msg)
    return re.sub(r"class (\d+), group (\d+)", cell, msg)


def _shrinkage(s):
    if s in ("ledoit_wolf", "none", "None"):
        return None if s.lower() == "none" else s
    try:
        v = float(s)
    except ValueError:
        raise UsageError(f"--shrinkage: expected 'ledoit_wolf', 'none' or a number in [0, 1], got {s!r}.") from None
    if not 0.0 <= v <= 1.0:
        raise UsageError(f"--shrinkage: {v} is outside [0, 1].")
    return v


# -- apply ------------------------------------------------------------------------------------------


def _apply(args) -> int:
    import numpy as np

    from jaxsteer import io

    path = args.data
    _check_out(args.out, inputs=[args.maps, args.data], example="steered.csv")
    maps = io.load_steerer(args.maps)
    na = maps.na_values | io.na_values(_split(args.na_values))
    tab = io.read_csv(path, encoding=args.encoding)
    needed = [args.group] + ([args.label] if args.label else [])
    io.require_columns(tab, needed, path)
    layout = maps.layout
    missing = [c for c in layout.columns if c not in tab]
    if missing:
        raise UsageError(f"{path}: the maps were fitted on another feature layout; missing column(s) {missing}.")
    for opt, col in (("--group", args.group), ("--label", args.label)):
        if col in layout.columns:
            raise UsageError(f"{opt}: column {col!r} is a feature of the maps (features: {list(layout.columns)}).")
    roles = {args.group: f"--group column {args.group!r}"}
    if args.label:
        roles[args.label] = f"--label column {args.label!r}"
    full = tab
    tab, counts = io.missing_values(full, list(layout.columns) + needed, na, roles=roles, drop=args.dropna)
    _report_dropped(full, tab, counts)

    known = [str(g) for g in maps.groups.tolist()]
    index = {g: i for i, g in enumerate(known)}
    a = np.array([index.get(g, -1) for g in tab[args.group]], dtype=np.int64)
    if np.any(a < 0):
        j = int(np.argmax(a < 0))
        raise UsageError(
            f"{path}: group {tab[args.group][j]!r} at {tab.where(j)} was not seen when the maps were fitted "
            f"(--group {args.group!r}; known: {known})."
        )
    y = None
    if args.label:
        lab = _label_values(tab, args.label)
        classes = [int(c) for c in maps.classes.tolist()]
        cindex = {c: i for i, c in enumerate(classes)}
        y = np.array([cindex.get(int(v), -1) for v in lab], dtype=np.int64)
        if np.any(y < 0):
            j = int(np.argmax(y < 0))
            raise UsageError(
                f"{path}: label {tab[args.label][j]!r} at {tab.where(j)} was not seen when the maps were fitted "
                f"(--label {args.label!r}; known: {classes})."
            )
    if args.unknown == "ignore":
        unseen = layout.unseen(tab)
        if unseen:
            per = ", ".join(f"{c!r} (e.g. {v!r}, {n} row{'s' if n > 1 else ''})" for c, v, _, n in unseen)
            print(f"--unknown ignore: values not seen in fitting encoded as all-zero indicators in {per}", flush=True)
    X = layout.encode(tab, path, na=na, unknown=args.unknown)
    _setup_jax()
    out = layout.decode(maps.transform_codes(X, a, y))
    if not np.all(np.isfinite(out)):
        j = int(np.argmax(~np.all(np.isfinite(out), axis=1)))
        raise UsageError(f"{path}: steering gave non-finite values at {tab.where(j)}; check that row for extreme values.")
    extra = [args.group] + ([args.label] if args.label else [])

    def write(p):
        with io.atomic_write(p, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(list(layout.names) + extra)
            for j in range(out.shape[0]):
                w.writerow([repr(float(v)) for v in out[j]] + [tab[c][j] for c in extra])

    _write(args.out, write)
    kind = "subgroup maps (labels given)" if y is not None else f"group map '{maps.meta['params']['map']}'"
    print(f"steered {out.shape[0]} rows with the {kind}; wrote {args.out}")
    return 0


# -- bench ------------------------------------------------------------------------------------------


def _bench(args, rest) -> int:
    # The suite ships in the package (jaxsteer.bench) and parses its own options: `jaxsteer bench
    # [run] [--quick] ...`. A missing optional dependency is reported there in one line (exit 2).
    from jaxsteer.bench import main as bench_main

    try:
        return int(bench_main(list(rest), prog="jaxsteer bench"))
    except SystemExit as e:  # --help (0) or a usage error, already printed in one line (2)
        return e.code if isinstance(e.code, int) else 2


# -- entry point ------------------------------------------------------------------------------------

DEFAULT_MAX_CATEGORIES = 50

_NA_HELP = (
    "extra tokens that mean a missing value (comma-separated, repeatable); always missing: the empty "
    "field, ?, NA, N/A, n/a, NaN, nan, NULL, null, None, #N/A, <NA> (pandas' defaults)"
)


class _Parser(argparse.ArgumentParser):
    """argparse with the command's one-line error format (``jaxsteer: error: ...``, exit status 2)."""

    def error(self, message):
        self.exit(2, f"jaxsteer: error: {message} (see '{self.prog} --help')\n")


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _add_input_options(p) -> None:
    """Options of both fit and apply on how DATA.csv is read."""
    p.add_argument("--encoding", default="utf-8",
                   help="text encoding of DATA.csv (default utf-8, a byte-order mark is ignored; e.g. latin-1, cp1252)")
    p.add_argument("--na-values", action="append", metavar="TOKENS", help=_NA_HELP)
    p.add_argument("--dropna", action="store_true",
                   help="drop rows with a missing value in a column used (and say how many); default: such a row "
                   "is an error naming the column and row")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="jaxsteer",
        description="Optimal steering to exact fairness: nearest ideal distributions and steering maps.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="run the embedded study (univariate case, Adult, COMPAS) and write a report",
                       description=__import__("jaxsteer.demo", fromlist=["x"]).__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--out", default="jaxsteer-demo", help="output directory (default: ./jaxsteer-demo)")
    d.add_argument("--datasets", default="adult,compas", help="comma-separated subset of adult,compas")
    d.add_argument("--components", type=int, default=20, help="principal components of the features (default 20)")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    d.set_defaults(func=_demo)

    f = sub.add_parser("fit", help="fit steering maps on a CSV file and save them",
                       description="Fit a class×group Gaussian model on DATA.csv, solve for its nearest ideal "
                       "distribution, save the maps. A feature column is numeric (standardised) when every entry "
                       "is a number, categorical (one-hot) when most entries are not or it is listed in "
                       "--categorical; a numeric column with a stray token, a categorical column with more than "
                       "--max-categories values, and a missing value are errors. The label must hold integer "
                       "class codes. Nothing is written unless the fit succeeds.")
    f.add_argument("data", metavar="DATA.csv")
    f.add_argument("--label", required=True, help="label column (integer class codes)")
    f.add_argument("--group", required=True, help="group (sensitive attribute) column")
    f.add_argument("--features", help="comma-separated feature columns (default: all others)")
    f.add_argument("--drop", action="append", metavar="COLS",
                   help="columns left out of the features (comma-separated, repeatable), e.g. an ID column")
    f.add_argument("--categorical", action="append", metavar="COLS",
                   help="feature columns one-hot encoded even though their values are numbers (codes such as "
                   "zip or occupation codes; comma-separated, repeatable)")
    f.add_argument("--max-categories", type=_positive_int, default=DEFAULT_MAX_CATEGORIES, metavar="N",
                   help=f"most distinct values of a categorical column (default {DEFAULT_MAX_CATEGORIES}); a column "
                   "with more is an error (an ID or free-text column: --drop it)")
    _add_input_options(f)
    f.add_argument("--intervention", choices=("affirmative", "all"), default="affirmative")
    f.add_argument("--form", choices=("symmetric", "affine"), default="affine")
    f.add_argument("--map", choices=("align", "moment", "posterior"), default="align",
                   help="label-free map used by `apply` without --label")
    f.add_argument("--shrinkage", default="ledoit_wolf", help="'ledoit_wolf' (default), 'none' or a number in [0, 1]")
    f.add_argument("--reference", help="group value kept fixed by the affirmative intervention (default: largest group)")
    f.add_argument("--out", required=True, metavar="MAPS.npz",
                   help="the maps file (checked before solving; written atomically)")
    f.set_defaults(func=_fit)

    a = sub.add_parser("apply", help="apply saved maps to a CSV file",
                       description="Steer DATA.csv with maps saved by `jaxsteer fit`. With --label the subgroup "
                       "maps are used (training data), otherwise the label-free group map. Missing-value tokens "
                       "given to fit (--na-values) apply here too. The output is UTF-8 and written only if "
                       "every row could be steered.")
    a.add_argument("maps", metavar="MAPS.npz")
    a.add_argument("data", metavar="DATA.csv")
    a.add_argument("--group", required=True, help="group column")
    a.add_argument("--label", help="label column: use the subgroup maps (pre-processing of training data)")
    a.add_argument("--unknown", choices=("error", "ignore"), default="error",
                   help="a categorical value not seen in fit: 'error' (default; names the column, value and row) or "
                   "'ignore' (encoded as all-zero indicators; the count is reported)")
    _add_input_options(a)
    a.add_argument("--out", required=True, metavar="STEERED.csv",
                   help="the steered CSV (checked before any work; written atomically)")
    a.set_defaults(func=_apply)

    b = sub.add_parser("bench", help="run the performance benchmarks (--quick: about 35 s on 2 cores; "
                       "options: jaxsteer bench --help)", add_help=False)
    b.set_defaults(func=None)
    return p


def _say_error(e) -> int:
    # One line whatever the message holds (a value with a newline in it is shown escaped).
    print(f"jaxsteer: error: {str(e).strip()}".replace("\r", "\\r").replace("\n", "\\n"), file=sys.stderr, flush=True)
    return 2


def main(argv=None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); returns the exit status
    (0 success, 2 a usage or data error reported in one line on stderr, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] == "bench":
        try:
            return _bench(None, argv[1:])
        except UsageError as e:
            return _say_error(e)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error, already printed in one line (2)
        return e.code if isinstance(e.code, int) else 2
    from jaxsteer.io import DataError

    try:
        return int(args.func(args))
    except (UsageError, DataError) as e:
        return _say_error(e)
    except KeyboardInterrupt:
        print("jaxsteer: interrupted; nothing written.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
