"""The ``jaxsteer`` command line (also ``python -m jaxsteer``).

    jaxsteer demo [--out DIR]                      the embedded study: univariate case, Adult, COMPAS
    jaxsteer fit DATA.csv --label COL --group COL [--features COLS] [--intervention I] [--form F]
                 [--map M] [--shrinkage S] [--reference G] --out MAPS.npz
    jaxsteer apply MAPS.npz DATA.csv --group COL [--label COL] --out STEERED.csv

Bad input (a missing column, a non-numeric label, a single group, an empty file, a maps file from
another feature layout, ...) prints a one-line ``jaxsteer: error: ...`` and exits with status 2,
writing nothing.
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
    # Solver compilation dominates short runs: keep compiled programs in a persistent cache so a
    # second `jaxsteer` run starts in seconds (JAXSTEER_CACHE_DIR="" turns it off).
    cache = os.environ.get("JAXSTEER_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "jaxsteer", "xla"))
    if cache:
        try:
            os.makedirs(cache, exist_ok=True)
            jax.config.update("jax_compilation_cache_dir", cache)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
        except (OSError, AttributeError):  # read-only home or an older jax: run without a cache
            pass


# -- demo -------------------------------------------------------------------------------------------


def _demo(args) -> int:
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


# -- fit --------------------------------------------------------------------------------------------


def _codes_numeric(values, col, path, what):
    import numpy as np

    try:
        num = np.array([float(v) for v in values])
    except ValueError:
        bad = next(v for v in values if not _isnum(v))
        raise UsageError(
            f"{path}: {what} column {col!r} is not numeric (found {bad!r}); encode it as integers 0..k-1."
        ) from None
    if not np.all(num == np.round(num)):
        raise UsageError(f"{path}: {what} column {col!r} must hold integer codes.")
    return num.astype(np.int64)


def _isnum(v) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _fit(args) -> int:
    from jaxsteer import io

    cols = io.read_csv(args.data)
    needed = [args.label, args.group]
    io.require_columns(cols, needed, args.data)
    if args.features:
        features = [c.strip() for c in args.features.split(",") if c.strip()]
        io.require_columns(cols, features, args.data)
        clash = [c for c in features if c in needed]
        if clash:
            raise UsageError(f"--features: {clash} is the label or group column.")
    else:
        features = [c for c in cols if c not in needed]
    if not features:
        raise UsageError(f"{args.data}: no feature columns besides the label and group.")
    y = _codes_numeric(cols[args.label], args.label, args.data, "label")
    groups = cols[args.group]
    if len(set(groups)) < 2:
        raise UsageError(f"{args.data}: group column {args.group!r} has a single value {groups[0]!r}; need at least 2 groups.")
    if len(set(y.tolist())) < 2:
        raise UsageError(f"{args.data}: label column {args.label!r} has a single class; need at least 2.")
    layout = io.FeatureLayout.fit(cols, features, args.data)
    X = layout.encode(cols, args.data)
    _setup_jax()
    import numpy as np

    import jaxsteer as js

    reference = args.reference
    if reference is not None and reference not in set(groups):
        raise UsageError(f"--reference: {reference!r} is not a value of the group column {args.group!r}.")
    t = time.perf_counter()
    print(f"fitting: {X.shape[0]} rows, {X.shape[1]} encoded features, groups {sorted(set(groups))} ...", flush=True)
    st = js.Steerer(
        intervention=args.intervention, form=args.form, map=args.map, shrinkage=_shrinkage(args.shrinkage),
        reference=reference,
    )
    try:
        st.fit(X, y, np.asarray(groups))
    except ValueError as e:
        raise UsageError(str(e).splitlines()[0]) from None
    print(f"solved in {time.perf_counter() - t:.1f} s\n")
    print(st.report())
    _check_out(args.out)
    io.save_steerer(args.out, st, layout, extra=dict(label=args.label, group=args.group, source=os.path.basename(args.data)))
    print(f"\nwrote {args.out}")
    return 0


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


def _check_out(path):
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise UsageError(f"--out: directory {d} does not exist.")


# -- apply ------------------------------------------------------------------------------------------


def _apply(args) -> int:
    import numpy as np

    from jaxsteer import io

    maps = io.load_steerer(args.maps)
    cols = io.read_csv(args.data)
    io.require_columns(cols, [args.group] + ([args.label] if args.label else []), args.data)
    missing = [c for c in maps.layout.columns if c not in cols]
    if missing:
        raise UsageError(
            f"{args.data}: the maps were fitted on another feature layout; missing column(s) {missing}."
        )
    X = maps.layout.encode(cols, args.data)
    groups = np.asarray(cols[args.group])
    known = [str(g) for g in maps.groups.tolist()]
    a = np.array([known.index(g) if g in known else -1 for g in groups])
    if np.any(a < 0):
        raise UsageError(f"{args.data}: group {str(groups[np.argmax(a < 0)])!r} was not seen when the maps were fitted (known: {known}).")
    y = None
    if args.label:
        lab = _codes_numeric(cols[args.label], args.label, args.data, "label")
        classes = maps.classes.tolist()
        if not set(lab.tolist()) <= set(classes):
            raise UsageError(f"{args.data}: label values {sorted(set(lab.tolist()) - set(classes))} were not seen in fit.")
        y = np.searchsorted(np.asarray(classes), lab)
    _setup_jax()
    Z = maps.transform(X, a, y)
    out = maps.layout.decode(Z)
    _check_out(args.out)
    tmp = args.out + ".tmp"
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        extra = [args.group] + ([args.label] if args.label else [])
        w.writerow(list(maps.layout.names) + extra)
        for j in range(out.shape[0]):
            w.writerow([repr(float(v)) for v in out[j]] + [groups[j]] + ([cols[args.label][j]] if args.label else []))
    os.replace(tmp, args.out)
    kind = "subgroup maps (labels given)" if y is not None else f"group map '{maps.meta['params']['map']}'"
    print(f"steered {out.shape[0]} rows with the {kind}; wrote {args.out}")
    return 0


# -- bench ------------------------------------------------------------------------------------------


def _bench(args, rest) -> int:
    try:
        from benchmarks.__main__ import main as bench_main
    except ImportError:
        raise UsageError(
            "bench: the benchmarks package is not importable; run from a source checkout "
            "(python -m benchmarks run)."
        ) from None
    rest = list(rest)
    if not rest or rest[0] != "run":
        rest = ["run"] + rest  # `jaxsteer bench --quick` = `python -m benchmarks run --quick`
    return int(bench_main(rest) or 0)


# -- entry point ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
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
                       "distribution, save the maps. Non-numeric feature columns are one-hot encoded, numeric "
                       "ones standardised; the label must hold integer class codes.")
    f.add_argument("data", metavar="DATA.csv")
    f.add_argument("--label", required=True, help="label column (integer class codes)")
    f.add_argument("--group", required=True, help="group (sensitive attribute) column")
    f.add_argument("--features", help="comma-separated feature columns (default: all others)")
    f.add_argument("--intervention", choices=("affirmative", "all"), default="affirmative")
    f.add_argument("--form", choices=("symmetric", "affine"), default="affine")
    f.add_argument("--map", choices=("align", "moment", "posterior"), default="align",
                   help="label-free map used by `apply` without --label")
    f.add_argument("--shrinkage", default="ledoit_wolf", help="'ledoit_wolf' (default), 'none' or a number in [0, 1]")
    f.add_argument("--reference", help="group value kept fixed by the affirmative intervention (default: largest group)")
    f.add_argument("--out", required=True, metavar="MAPS.npz")
    f.set_defaults(func=_fit)

    a = sub.add_parser("apply", help="apply saved maps to a CSV file",
                       description="Steer DATA.csv with maps saved by `jaxsteer fit`. With --label the subgroup "
                       "maps are used (training data), otherwise the label-free group map.")
    a.add_argument("maps", metavar="MAPS.npz")
    a.add_argument("data", metavar="DATA.csv")
    a.add_argument("--group", required=True, help="group column")
    a.add_argument("--label", help="label column: use the subgroup maps (pre-processing of training data)")
    a.add_argument("--out", required=True, metavar="STEERED.csv")
    a.set_defaults(func=_apply)

    b = sub.add_parser("bench", help="run the benchmarks (source checkout; same as python -m benchmarks)",
                       add_help=False)
    b.set_defaults(func=None)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] == "bench":
        try:
            return _bench(None, argv[1:])
        except UsageError as e:
            print(f"jaxsteer: error: {e}", file=sys.stderr)
            return 2
    args = parser.parse_args(argv)
    from jaxsteer.io import DataError

    try:
        return int(args.func(args))
    except (UsageError, DataError) as e:
        print(f"jaxsteer: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
