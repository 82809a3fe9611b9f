"""CSV in, steering maps out: the data layer of the ``jaxsteer fit`` / ``apply`` commands.

* :func:`read_csv` — a header + rows CSV (stdlib ``csv``; no pandas) as a dict of string columns;
* :class:`FeatureLayout` — how raw columns become a numeric matrix: numeric columns standardised
  with the fitting data's mean and standard deviation, categorical (non-numeric) columns one-hot
  encoded with the categories seen in fitting; :meth:`FeatureLayout.decode` maps a (steered) matrix
  back to the encoded columns' original units;
* :func:`save_steerer` / :func:`load_steerer` — a fitted :class:`~jaxsteer.Steerer` and its layout in
  one ``.npz`` file (arrays plus a JSON metadata record), enough to apply the maps later.

Every problem raises :class:`DataError` (a ``ValueError``) with a one-line message naming it.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os

import numpy as np

__all__ = ["DataError", "read_csv", "require_columns", "FeatureLayout", "LoadedMaps", "save_steerer", "load_steerer", "FORMAT_VERSION"]

FORMAT_VERSION = 1


def _solve_status(solution) -> str:
    from jaxsteer.solve import Status

    return Status(int(solution.status)).name.lower()


class DataError(ValueError):
    """Bad input data or files (a one-line, user-facing message)."""


def read_csv(path: str) -> dict[str, list[str]]:
    """Read a CSV file with a header row into ``{column: [values...]}`` (strings, whitespace stripped).

    Raises:
        DataError: missing or empty file, no data rows, ragged rows, duplicate column names.

    Example:
        >>> cols = read_csv("adult.csv"); cols["sex"][:3]
    """
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file.")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if not rows:
        raise DataError(f"{path}: the file is empty.")
    header = [h.strip() for h in rows[0]]
    dup = {h for h in header if header.count(h) > 1}
    if dup:
        raise DataError(f"{path}: duplicate column name(s) {sorted(dup)} in the header.")
    body = rows[1:]
    if not body:
        raise DataError(f"{path}: has a header but no data rows.")
    for j, r in enumerate(body):
        if len(r) != len(header):
            raise DataError(f"{path}: row {j + 2} has {len(r)} fields, the header has {len(header)}.")
    return {h: [r[i].strip() for r in body] for i, h in enumerate(header)}


def _as_float(values: list[str]) -> np.ndarray | None:
    """The column as floats, or None if any entry is not a number (empty entries are not numbers)."""
    try:
        return np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        return None


def require_columns(cols: dict, names, path: str) -> None:
    """Raise :class:`DataError` naming every column of ``names`` missing from ``cols``.

    Example:
        >>> require_columns(read_csv("data.csv"), ["income", "sex"], "data.csv")
    """
    missing = [n for n in names if n not in cols]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; available: {list(cols)}.")


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
    def fit(cls, cols: dict, columns, path: str = "data") -> "FeatureLayout":
        """Learn the layout from the fitting data's columns."""
        categories, names, means, scales = {}, [], [], []
        for c in columns:
            num = _as_float(cols[c])
            if num is not None:
                if not np.all(np.isfinite(num)):
                    raise DataError(f"{path}: column {c!r} contains NaN or inf.")
                sd = float(num.std())
                names.append(c)
                means.append(float(num.mean()))
                scales.append(sd if sd > 0 else 1.0)
            else:
                cats = sorted(set(cols[c]))
                if "" in cats:
                    raise DataError(f"{path}: column {c!r} has empty entries; fill or drop them.")
                categories[c] = cats
                names += [f"{c}={v}" for v in cats]
                means += [0.0] * len(cats)
                scales += [1.0] * len(cats)
        return cls(tuple(columns), categories, tuple(names), np.array(means), np.array(scales))

    def encode(self, cols: dict, path: str = "data") -> np.ndarray:
        """``[n, d]`` standardised / one-hot matrix of the given columns (unseen categories → zeros)."""
        require_columns(cols, self.columns, path)
        blocks = []
        for c in self.columns:
            if c in self.categories:
                cats = self.categories[c]
                v = np.asarray(cols[c])
                blocks.append((v[:, None] == np.asarray(cats)[None, :]).astype(np.float64))
            else:
                num = _as_float(cols[c])
                if num is None:
                    bad = next(v for v in cols[c] if _as_float([v]) is None)
                    raise DataError(f"{path}: column {c!r} was numeric when the maps were fitted but contains {bad!r}.")
                if not np.all(np.isfinite(num)):
                    raise DataError(f"{path}: column {c!r} contains NaN or inf.")
                blocks.append(num[:, None])
        X = np.concatenate(blocks, axis=1)
        return (X - self.mean) / self.scale

    def decode(self, X: np.ndarray) -> np.ndarray:
        """Undo the standardisation: encoded features in the original units (one-hot stay as is)."""
        return np.asarray(X) * self.scale + self.mean

    def to_json(self) -> dict:
        return dict(columns=list(self.columns), categories=self.categories, names=list(self.names))

    @classmethod
    def from_json(cls, meta: dict, mean, scale) -> "FeatureLayout":
        return cls(tuple(meta["columns"]), dict(meta["categories"]), tuple(meta["names"]), np.asarray(mean), np.asarray(scale))


def save_steerer(path: str, steerer, layout: FeatureLayout, extra: dict | None = None) -> None:
    """Save a fitted :class:`~jaxsteer.Steerer` and its feature layout to ``path`` (``.npz``).

    The file holds the fitted family, the ideal target, the template-to-group maps, the subgroup and
    group maps, the sample weights and a JSON record (options, classes, groups, layout, diagnostics).
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
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def _jsonable(v):
    return v.item() if hasattr(v, "item") else v


class LoadedMaps:
    """Steering maps read back by :func:`load_steerer`: ``transform(X, a, y=None)`` like a Steerer."""

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

    def transform(self, X, a_codes, y_codes=None) -> np.ndarray:
        """Steer encoded ``X [n, d]`` with group codes ``a_codes [n]``: the subgroup maps when class
        codes ``y_codes [n]`` are given, else the saved label-free group map. Returns ``[n, d]``.

        Example:
            >>> load_steerer("maps.npz").transform(X, a)
        """
        if y_codes is None:
            return np.asarray(self.group_map.apply(X, a_codes))
        return np.asarray(self.subgroup_map.apply(X, y_codes, a_codes))


def load_steerer(path: str) -> LoadedMaps:
    """Read a file written by :func:`save_steerer`.

    Raises:
        DataError: missing file, not a jaxsteer maps file, or a newer format version.
    """
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file.")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("meta")))
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise DataError(f"{path}: not a jaxsteer maps file ({type(e).__name__}).") from None
    if meta.get("format") != "jaxsteer-maps":
        raise DataError(f"{path}: not a jaxsteer maps file.")
    if int(meta.get("version", 0)) > FORMAT_VERSION:
        raise DataError(f"{path}: written by a newer jaxsteer (format {meta['version']}); upgrade jaxsteer.")
    return LoadedMaps(meta, arrays)
