"""CSV in, steering maps out: the data layer of the ``jaxsteer fit`` / ``apply`` commands.

* :func:`read_csv` — a header + rows CSV (stdlib ``csv``; no pandas) as a :class:`Table`: a dict of
  string columns that also knows which data row and line of the file each entry came from, so that
  every error can point at the offending entry;
* :func:`missing_values` — rows with a missing entry (empty, ``NA``, ``n/a``, ``NaN``, ``?``, ... and
  any extra tokens) in the columns used: an error naming the first one, or the rows to drop;
* :class:`FeatureLayout` — how raw columns become a numeric matrix: numeric columns standardised
  with the fitting data's mean and standard deviation, categorical (non-numeric) columns one-hot
  encoded with the categories seen in fitting; a mostly numeric column with a stray token, or a
  categorical column with more distinct values than a limit (an ID column), is an error, never a
  silent one-hot encoding; :meth:`FeatureLayout.decode` maps a (steered) matrix back to the encoded
  columns' original units;
* :func:`save_steerer` / :func:`load_steerer` — a fitted :class:`~jaxsteer.Steerer` and its layout in
  one ``.npz`` file (arrays plus a JSON metadata record with the categories of every one-hot column,
  so that ``apply`` reproduces the encoding and detects values it never saw), enough to apply the
  maps later;
* :func:`atomic_write` — output files appear complete or not at all (a temporary file in the same
  directory, renamed over the target, removed on any failure).

Every problem raises :class:`DataError` (a ``ValueError``) with a one-line message naming the file,
the column, the value and its row, and the fix.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import dataclasses
import json
import os
import stat
import tempfile
from io import StringIO  # the standard library's io (this module is jaxsteer.io)

import numpy as np

__all__ = [
    "DataError", "Table", "read_csv", "require_columns", "DEFAULT_NA_VALUES", "na_values", "missing_values",
    "FeatureLayout", "LoadedMaps", "save_steerer", "load_steerer", "atomic_write", "FORMAT_VERSION",
]

FORMAT_VERSION = 1

#: Entries that mean "missing" in every column: pandas' default ``na_values`` plus ``?`` (the UCI
#: convention, e.g. Adult). Matched exactly after stripping surrounding whitespace.
DEFAULT_NA_VALUES = frozenset({
    "", "?", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
    "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
})

#: Categorical values listed in full in an error message; longer lists are cut.
_SHOW = 10


def _solve_status(solution) -> str:
    from jaxsteer.solve import Status

    return Status(int(solution.status)).name.lower()


class DataError(ValueError):
    """Bad input data or files (a one-line, user-facing message)."""


# -- reading ----------------------------------------------------------------------------------------


class Table(dict):
    """CSV columns ``{name: [str, ...]}`` (a ``dict``) that remember where each row came from.

    Attributes:
        path: the file name, as given (used in messages).
        rows: ``[n]`` 1-based data-row numbers in the file (the header is not a data row; blank
            lines are skipped and not counted).
        lines: ``[n]`` 1-based line numbers in the file where each data row starts.
    """

    def __init__(self, columns: dict, path: str, rows, lines):
        super().__init__(columns)
        self.path = path
        self.rows = np.asarray(rows, dtype=np.int64)
        self.lines = np.asarray(lines, dtype=np.int64)

    @property
    def n(self) -> int:
        return len(self.rows)

    def where(self, j: int) -> str:
        """``"data row R (line L)"`` of the ``j``-th row of this table."""
        return f"data row {int(self.rows[j])} (line {int(self.lines[j])})"

    def take(self, keep) -> "Table":
        """The rows where the boolean mask ``keep`` is true (row and line numbers are kept)."""
        keep = np.asarray(keep, dtype=bool)
        idx = np.flatnonzero(keep)
        return Table({c: [v[j] for j in idx] for c, v in self.items()}, self.path, self.rows[keep], self.lines[keep])


def _as_table(cols: dict, path: str | None) -> Table:
    """``cols`` as a :class:`Table` (a plain dict's rows are numbered as if read from a file)."""
    if isinstance(cols, Table):
        return cols
    n = len(next(iter(cols.values()))) if cols else 0
    return Table(cols, path or "data", np.arange(1, n + 1), np.arange(2, n + 2))


def _utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name == "utf-8"


def read_csv(path: str, encoding: str = "utf-8") -> Table:
    """Read a CSV file with a header row into a :class:`Table` ``{column: [values...]}`` (strings,
    whitespace stripped). Blank lines are skipped; a UTF-8 byte-order mark is ignored.

    Args:
        path: the file.
        encoding: its text encoding (any Python codec name, e.g. ``"latin-1"``, ``"cp1252"``).

    Raises:
        DataError: missing file, a directory, unreadable file, bytes that are not valid in
            ``encoding`` (naming the line), malformed CSV, an empty file, a header without data rows,
            an empty or duplicate column name, rows with a different number of fields than the header.

    Example:
        >>> import os, tempfile
        >>> from jaxsteer.io import read_csv
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = os.path.join(tmp.name, "adult.csv")
        >>> with open(path, "w") as fh:
        ...     _ = fh.write("age,sex,income\\n39, Male,<=50K\\n\\n50,Female,>50K\\n")
        >>> cols = read_csv(path); cols["sex"][:3]          # strings, whitespace stripped
        ['Male', 'Female']
        >>> cols.where(1)                                   # where each row came from, for messages
        'data row 2 (line 4)'
        >>> tmp.cleanup()
    """
    try:
        codec = codecs.lookup(encoding)
    except LookupError:
        raise DataError(f"--encoding: unknown encoding {encoding!r} (try utf-8, latin-1 or cp1252).") from None
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, not a CSV file.")
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file.")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({e.strerror or type(e).__name__}).") from None
    try:
        # utf-8-sig: a byte-order mark (Excel writes one) would otherwise stick to the first header.
        text = data.decode("utf-8-sig" if _utf8(encoding) else encoding)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"{path}: line {line} is not valid {codec.name} (byte 0x{data[e.start]:02x}); pass --encoding with "
            f"the file's encoding, e.g. --encoding latin-1 or --encoding cp1252."
        ) from None
    header, body, rows, lines = None, [], [], []
    # strict: an unclosed quote is an error, not the rest of the file swallowed into one field.
    reader = csv.reader(StringIO(text, newline=""), strict=True)
    while True:
        start = reader.line_num + 1
        try:
            r = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataError(f"{path}: the row starting at line {start} is not valid CSV ({e}); check its quotes.") from None
        if not r or (len(r) == 1 and not r[0].strip()):
            continue  # a blank line
        if header is None:
            header = [h.strip() for h in r]
            header_line = start
            continue
        if len(r) != len(header):
            raise DataError(
                f"{path}: line {start} (data row {len(body) + 1}) has {len(r)} fields, the header has {len(header)}."
            )
        body.append(r)
        rows.append(len(body))
        lines.append(start)
    if header is None:
        raise DataError(f"{path}: the file is empty (expected a header row and data rows).")
    empty = [i + 1 for i, h in enumerate(header) if not h]
    if empty:
        raise DataError(f"{path}: header field {empty[0]} (line {header_line}) is empty; every column needs a name.")
    seen = {}
    for i, h in enumerate(header):
        if h in seen:
            raise DataError(
                f"{path}: duplicate column name {h!r} in the header (fields {seen[h] + 1} and {i + 1}); rename one."
            )
        seen[h] = i
    if not body:
        raise DataError(f"{path}: has a header but no data rows.")
    return Table({h: [r[i].strip() for r in body] for i, h in enumerate(header)}, path, rows, lines)


def require_columns(cols: dict, names, path: str) -> None:
    """Raise :class:`DataError` naming every column of ``names`` missing from ``cols``.

    Example:
        >>> from jaxsteer.io import require_columns
        >>> cols = {"age": ["39", "50"], "income": ["<=50K", ">50K"]}
        >>> require_columns(cols, ["income", "sex"], "data.csv")
        Traceback (most recent call last):
            ...
        jaxsteer.io.DataError: data.csv: missing column(s) ['sex']; available: ['age', 'income'].
    """
    missing = [n for n in names if n not in cols]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; available: {list(cols)}.")


# -- missing values ---------------------------------------------------------------------------------


def na_values(extra=()) -> frozenset:
    """The missing-value tokens: :data:`DEFAULT_NA_VALUES` plus ``extra`` (stripped strings)."""
    return DEFAULT_NA_VALUES | {str(t).strip() for t in extra}


def missing_values(cols: dict, columns, na=DEFAULT_NA_VALUES, *, roles: dict | None = None, drop: bool = False):
    """Find rows with a missing entry (a token of ``na``) in any of ``columns``.

    Args:
        cols: a :class:`Table` (or a dict of string columns).
        columns: the columns that must be complete.
        na: the missing-value tokens (:func:`na_values`).
        roles: optional ``{column: description}`` for messages (e.g. ``"--group column 'sex'"``).
        drop: drop such rows instead of raising.

    Returns:
        ``(table, counts)``: the table without the incomplete rows (the input itself when none) and
        ``{column: number of missing entries}`` over the dropped rows (empty when none).

    Raises:
        DataError: (``drop=False``) naming the earliest row with a missing entry, its column and value.
    """
    t = _as_table(cols, None)
    masks = {c: np.fromiter((v in na for v in t[c]), bool, count=t.n) for c in columns}
    bad = np.zeros(t.n, bool)
    for m in masks.values():
        bad |= m
    if not bad.any():
        return t, {}
    if not drop:
        j = int(np.argmax(bad))
        c = next(c for c in columns if masks[c][j])
        what = (roles or {}).get(c, f"column {c!r}")
        raise DataError(
            f"{t.path}: {what} has a missing value {t[c][j]!r} at {t.where(j)}; fill it, or pass --dropna to drop "
            f"rows with missing values (--na-values adds tokens that mean missing)."
        )
    counts = {c: int(m.sum()) for c, m in masks.items() if m.any()}
    return t.take(~bad), counts


# -- encoding ---------------------------------------------------------------------------------------


def _parse_float(v: str):
    try:
        return float(v)
    except ValueError:
        return None


def _show(values) -> str:
    values = [str(v) for v in values]
    head = ", ".join(repr(v) for v in values[:_SHOW])
    return head + (f", ... ({len(values)} in all)" if len(values) > _SHOW else "")


@dataclasses.dataclass(frozen=True)
class FeatureLayout:
    """How raw CSV columns become the numeric feature matrix.

    Attributes:
        columns: the raw feature columns, in order.
        categories: ``{column: [category, ...]}`` for the one-hot encoded (non-numeric) columns.
        names: the encoded feature names (``col`` or ``col=category``), ``[d]``.
        mean, scale: ``[d]`` standardisation (one-hot columns keep ``mean 0``, ``scale 1``).
    """

    columns: tuple
    categories: dict
    names: tuple
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(
        cls, cols: dict, columns, path: str | None = None, *, na=DEFAULT_NA_VALUES, max_categories: int | None = None,
        categorical=(),
    ) -> "FeatureLayout":
        """Learn the layout from the fitting data's columns.

        A column is numeric when every entry parses as a number, categorical (one-hot) when it is
        listed in ``categorical`` or when most of its entries are not numbers.

        Args:
            cols: a :class:`Table` (or a dict of string columns).
            columns: the feature columns.
            path: the file name for messages (default: the table's).
            na: missing-value tokens; a missing entry is an error (drop such rows first).
            max_categories: most distinct values of a categorical column (``None``: no limit).
            categorical: columns one-hot encoded even when their values are numbers (codes).

        Raises:
            DataError: a missing or non-finite entry; a mostly numeric column with a non-numeric
                entry; a categorical column with more than ``max_categories`` values; encoded names
                that collide.
        """
        t = _as_table(cols, path)
        path = path or t.path
        require_columns(t, columns, path)
        missing_values(t, columns, na)
        categorical = set(categorical)
        categories, names, means, scales = {}, [], [], []
        for c in columns:
            values = t[c]
            parsed = None if c in categorical else [_parse_float(v) for v in values]
            is_num = None if parsed is None else np.array([p is not None for p in parsed])
            if is_num is not None and is_num.all():
                num = np.array(parsed, dtype=np.float64)
                _check_finite(t, c, num, path)
                with np.errstate(over="ignore", invalid="ignore"):
                    mu, sd = float(num.mean()), float(num.std())
                if not (np.isfinite(mu) and np.isfinite(sd)):
                    raise DataError(
                        f"{path}: column {c!r} has values too large to standardise (up to {np.abs(num).max():.3g}); "
                        "rescale it."
                    )
                names.append(c)
                means.append(mu)
                scales.append(sd if sd > 0 else 1.0)
                continue
            if is_num is not None and is_num.sum() >= (~is_num).sum():
                j = int(np.argmax(~is_num))
                raise DataError(
                    f"{path}: column {c!r} is numeric except {values[j]!r} at {t.where(j)}; if it marks a missing "
                    f"value pass --na-values {values[j]!r}, if the column is categorical pass --categorical {c}."
                )
            cats = sorted(set(values))
            if max_categories is not None and len(cats) > max_categories:
                raise DataError(
                    f"{path}: column {c!r} has {len(cats)} distinct values, more than --max-categories "
                    f"{max_categories} (an ID or free-text column?); drop it with --drop {c}, or raise --max-categories."
                )
            categories[c] = cats
            names += [f"{c}={v}" for v in cats]
            means += [0.0] * len(cats)
            scales += [1.0] * len(cats)
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise DataError(f"{path}: encoded feature name(s) {dup} collide (a column and a one-hot category); rename a column.")
        return cls(tuple(columns), categories, tuple(names), np.array(means, dtype=np.float64), np.array(scales, dtype=np.float64))

    def unseen(self, cols: dict) -> list:
        """Categorical entries of ``cols`` not seen in fitting.

        Returns:
            ``[(column, first unseen value, its row index, number of rows with an unseen value)]``,
            one entry per categorical column that has any.
        """
        out = []
        for c, cats in self.categories.items():
            known = set(cats)
            bad = np.fromiter((v not in known for v in cols[c]), bool, count=len(cols[c]))
            if bad.any():
                j = int(np.argmax(bad))
                out.append((c, cols[c][j], j, int(bad.sum())))
        return out

    def encode(self, cols: dict, path: str | None = None, *, na=DEFAULT_NA_VALUES, unknown: str = "error") -> np.ndarray:
        """``[n, d]`` standardised / one-hot matrix of the given columns.

        Args:
            cols: a :class:`Table` (or a dict of string columns) with every column of the layout.
            path: the file name for messages (default: the table's).
            na: missing-value tokens; a missing entry is an error (drop such rows first).
            unknown: ``"error"`` (default): a categorical value not seen in fitting is an error;
                ``"ignore"``: it is encoded as all-zero indicators.

        Raises:
            DataError: a missing column or entry, an unseen category (``unknown="error"``), a
                non-numeric or non-finite entry in a numeric column.
        """
        if unknown not in ("error", "ignore"):
            raise ValueError(f"unknown: expected 'error' or 'ignore', got {unknown!r}.")
        t = _as_table(cols, path)
        path = path or t.path
        require_columns(t, self.columns, path)
        missing_values(t, self.columns, na)
        if unknown == "error":
            for c, v, j, count in self.unseen(t):
                raise DataError(
                    f"{path}: column {c!r}: value {v!r} at {t.where(j)} was not seen when the maps were fitted "
                    f"({count} row{'s' if count > 1 else ''} with unseen values; known: {_show(self.categories[c])}); "
                    "pass --unknown ignore to encode unseen values as all-zero indicators."
                )
        blocks = []
        for c in self.columns:
            if c in self.categories:
                cats = self.categories[c]
                v = np.asarray(t[c], dtype=object)
                blocks.append((v[:, None] == np.asarray(cats, dtype=object)[None, :]).astype(np.float64))
            else:
                parsed = [_parse_float(v) for v in t[c]]
                bad = [j for j, p in enumerate(parsed) if p is None]
                if bad:
                    raise DataError(
                        f"{path}: column {c!r} was numeric when the maps were fitted but has {t[c][bad[0]]!r} at "
                        f"{t.where(bad[0])}; fix the value, or pass --na-values {t[c][bad[0]]!r} and --dropna."
                    )
                num = np.array(parsed, dtype=np.float64)
                _check_finite(t, c, num, path)
                blocks.append(num[:, None])
        X = np.concatenate(blocks, axis=1) if blocks else np.zeros((t.n, 0))
        return (X - self.mean) / self.scale

    def decode(self, X: np.ndarray) -> np.ndarray:
        """Undo the standardisation: encoded features in the original units (one-hot stay as is)."""
        return np.asarray(X) * self.scale + self.mean

    def to_json(self) -> dict:
        return dict(columns=list(self.columns), categories=self.categories, names=list(self.names))

    @classmethod
    def from_json(cls, meta: dict, mean, scale) -> "FeatureLayout":
        return cls(tuple(meta["columns"]), dict(meta["categories"]), tuple(meta["names"]), np.asarray(mean), np.asarray(scale))


def _check_finite(t: Table, c: str, num: np.ndarray, path: str) -> None:
    bad = ~np.isfinite(num)
    if bad.any():
        j = int(np.argmax(bad))
        raise DataError(f"{path}: column {c!r} has the non-finite value {t[c][j]!r} at {t.where(j)}; replace it.")


# -- writing ----------------------------------------------------------------------------------------


def _new_file_mode(path: str) -> int:
    """The permission bits a plainly created ``path`` would get (an existing file keeps its own)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "wb", **open_kwargs):
    """Write ``path`` atomically: yield a temporary file in the same directory, then rename it over
    ``path``. On any failure (an exception, Ctrl-C) the temporary file is removed and ``path`` is
    left as it was.

    Example:
        >>> import os, tempfile
        >>> from jaxsteer.io import atomic_write
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = os.path.join(tmp.name, "out.csv")
        >>> with atomic_write(path, "w", newline="") as fh:
        ...     _ = fh.write("a,b\\n")
        >>> os.listdir(tmp.name)                  # the temporary file was renamed over out.csv
        ['out.csv']
        >>> tmp.cleanup()
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **open_kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _new_file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_steerer(path: str, steerer, layout: FeatureLayout, extra: dict | None = None) -> None:
    """Save a fitted :class:`~jaxsteer.Steerer` and its feature layout to ``path`` (``.npz``, written
    atomically: the file is complete or absent, whatever the suffix of ``path``).

    The file holds the fitted family, the ideal target, the template-to-group maps, the subgroup and
    group maps, the sample weights and a JSON record (options, classes, groups, layout with the
    categories of every one-hot column, diagnostics, and ``extra``).
    """
    sol, fam = steerer.solution_, steerer.family_
    meta = dict(
        format="jaxsteer-maps",
        version=FORMAT_VERSION,
        params={k: v for k, v in steerer.get_params().items() if k != "reference"},
        reference=_jsonable(steerer.reference_),
        classes=[_jsonable(c) for c in steerer.classes_],
        groups=[_jsonable(g) for g in steerer.groups_],
        layout=layout.to_json(),
        kl=float(sol.kl),
        converged=bool(sol.converged),
        status=_solve_status(sol),
        **(extra or {}),
    )
    arrays = dict(
        meta=np.array(json.dumps(meta)),
        layout_mean=layout.mean,
        layout_scale=layout.scale,
        family_priors=np.asarray(fam.priors),
        family_means=np.asarray(fam.means),
        family_covs=np.asarray(fam.covs),
        target_priors=np.asarray(sol.target.priors),
        target_means=np.asarray(sol.target.means),
        target_covs=np.asarray(sol.target.covs),
        maps_A=np.asarray(sol.maps.A),
        maps_b=np.asarray(sol.maps.b),
        weights=np.asarray(sol.weights),
    )
    with atomic_write(path, "wb") as fh:  # a file object: numpy appends no ".npz" to the name
        np.savez_compressed(fh, **arrays)


def _jsonable(v):
    return v.item() if hasattr(v, "item") else v


class LoadedMaps:
    """Steering maps read back by :func:`load_steerer`: ``transform(X, a, y=None)`` with labels, like
    a Steerer, or ``transform_codes`` with integer codes.

    Attributes:
        meta: the JSON record; layout: the :class:`FeatureLayout`; classes, groups: the label and group
        values (codes are positions in these); family, target, weights, subgroup_map, group_map.
    """

    def __init__(self, meta: dict, arrays: dict):
        import jax.numpy as jnp

        from jaxsteer import maps as _maps
        from jaxsteer.family import GaussianFamily

        self.meta = meta
        self.layout = FeatureLayout.from_json(meta["layout"], arrays["layout_mean"], arrays["layout_scale"])
        lognormal = bool(meta["params"].get("lognormal", False))
        self.family = GaussianFamily(
            arrays["family_priors"], arrays["family_means"], arrays["family_covs"], lognormal=lognormal, validate=False
        )
        self.target = GaussianFamily(
            arrays["target_priors"], arrays["target_means"], arrays["target_covs"], lognormal=lognormal, validate=False
        )
        self.classes = np.asarray(meta["classes"])
        self.groups = np.asarray(meta["groups"])
        self.weights = arrays["weights"]
        self.subgroup_map = _maps.subgroup_maps(self.family, self.target)
        kind = meta["params"]["map"]
        if kind == "align":
            self.group_map = _maps.AffineMap(jnp.asarray(arrays["maps_A"]), jnp.asarray(arrays["maps_b"]), lognormal).inverse()
        else:
            self.group_map = _maps.group_maps(self.family, self.target, kind)

    @property
    def na_values(self) -> frozenset:
        """The missing-value tokens used in fitting (files from before they were recorded: the defaults)."""
        return na_values(self.meta.get("na_values", ()))

    def transform(self, X, a, y=None) -> np.ndarray:
        """Steer encoded ``X [n, d]`` with group labels ``a [n]`` (the values seen in fitting, as
        :meth:`Steerer.transform <jaxsteer.Steerer.transform>` takes them): the subgroup maps when
        class labels ``y [n]`` are given, else the saved label-free group map. Returns ``[n, d]``.

        Raises:
            ValueError: a label not seen in fitting, naming the argument, the value and the known ones.

        Example:
            >>> import os, tempfile
            >>> import numpy as np
            >>> from jaxsteer import Steerer
            >>> from jaxsteer.io import FeatureLayout, load_steerer, save_steerer
            >>> rng = np.random.default_rng(0)
            >>> y = rng.integers(0, 2, 500)
            >>> a = rng.choice(np.array(["F", "M"]), 500)
            >>> cols = {"x1": [f"{v:.3f}" for v in rng.normal(size=500) + y + (a == "M")],
            ...         "x2": [f"{v:.3f}" for v in rng.normal(size=500) + y]}      # CSV columns (strings)
            >>> layout = FeatureLayout.fit(cols, ["x1", "x2"])
            >>> X = layout.encode(cols)                                           # [n, 2], standardised
            >>> st = Steerer().fit(X, y, a)
            >>> tmp = tempfile.TemporaryDirectory()
            >>> save_steerer(os.path.join(tmp.name, "maps.npz"), st, layout)
            >>> maps = load_steerer(os.path.join(tmp.name, "maps.npz"))
            >>> maps.groups.tolist()
            ['F', 'M']
            >>> np.allclose(maps.transform(X, a), st.transform(X, a), atol=1e-5)
            True
            >>> np.allclose(maps.transform_codes(X, (a == "M").astype(int)), st.transform(X, a), atol=1e-5)
            True
            >>> tmp.cleanup()
        """
        from jaxsteer import _validate

        n = np.shape(X)[0]
        a_codes, _ = _validate.labels(a, self.groups, "a", n)
        y_codes = None if y is None else _validate.labels(y, self.classes, "y", n)[0]
        return self.transform_codes(X, a_codes, y_codes)

    def transform_codes(self, X, a_codes, y_codes=None) -> np.ndarray:
        """:meth:`transform` with integer codes (positions in :attr:`groups` and :attr:`classes`) in
        place of labels."""
        from jaxsteer import _validate

        n = np.shape(X)[0]
        a_codes = _validate.codes(a_codes, "a_codes", "group", n=n, size=len(self.groups))
        if y_codes is None:
            return np.asarray(self.group_map.apply(X, a_codes))
        y_codes = _validate.codes(y_codes, "y_codes", "class", n=n, size=len(self.classes))
        return np.asarray(self.subgroup_map.apply(X, y_codes, a_codes))


def load_steerer(path: str) -> LoadedMaps:
    """Read a file written by :func:`save_steerer`.

    Raises:
        DataError: missing file, a directory, not a jaxsteer maps file (or an incomplete one), or a
            newer format version.
    """
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, not a maps file written by `jaxsteer fit`.")
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file.")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("meta")))
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise DataError(f"{path}: not a jaxsteer maps file ({type(e).__name__}).") from None
    if not isinstance(meta, dict) or meta.get("format") != "jaxsteer-maps":
        raise DataError(f"{path}: not a jaxsteer maps file.")
    if int(meta.get("version", 0)) > FORMAT_VERSION:
        raise DataError(f"{path}: written by a newer jaxsteer (format {meta['version']}); upgrade jaxsteer.")
    try:
        return LoadedMaps(meta, arrays)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path}: an incomplete or damaged jaxsteer maps file ({type(e).__name__}: {e}); fit it again.") from None
