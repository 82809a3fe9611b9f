"""Shared machinery for the vendored tabular data sets (Adult, COMPAS): numpy and the stdlib only.

* :class:`TabularData` — the result of every real-data loader;
* :func:`read_text` — a vendored file, found through :mod:`importlib.resources` (so it works from
  any working directory, an editable install, a wheel or a zip);
* :func:`stratified_split` — a seeded train/test split stratified by ``(y, a)``;
* :func:`encode` — one-hot / ordinal encoding and standardisation fitted on the train split only.
"""

from __future__ import annotations

import dataclasses
import gzip
import numbers
from importlib import resources

import numpy as np

__all__ = ["TabularData", "read_text", "stratified_split", "encode"]

_DATA_PACKAGE = "jaxsteer.datasets"
_DATA_DIR = "data"


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class TabularData:
    """A tabular data set, encoded for modelling, with its train/test split.

    ``n`` = rows of a split, ``d`` = encoded features. Every loader call builds fresh arrays, so
    modifying them in place never affects a later call.

    Attributes:
        X_train, X_test: ``float64 [n, d]`` encoded features. Numeric source columns become one
            column each (standardised with the *train* mean and standard deviation when the loader
            was asked to); categorical source columns become a one-hot block (categories taken
            from the train split; a test category unseen in train encodes as all zeros) or, with
            ``one_hot=False``, one column of integer codes (``-1`` for an unseen category).
        y_train, y_test: ``int32 [n]`` class codes ``0..k-1``, named by :attr:`class_names`.
        a_train, a_test: ``int32 [n]`` group codes ``0..m-1``, named by :attr:`group_names`.
        feature_names: ``d`` names of the columns of ``X``: ``"age"`` for a numeric column,
            ``"sex=Male"`` for a one-hot column, ``"sex"`` for an ordinal-coded column.
        group_names: names of the group codes ``0..m-1`` (code 0 is the disadvantaged group).
        class_names: names of the class codes ``0..k-1``.
        group: the name of the sensitive attribute (``"sex"``, ``"race"``).
        description: what the data are, how they were cleaned and split, and the citation.
        feature_blocks: source column → ``slice`` of the columns of ``X`` it was encoded into, in
            column order (e.g. ``X_train[:, data.feature_blocks["workclass"]]``).
        categorical: the source columns that were encoded as categories.
        mean, scale: ``float64 [d]``: ``X = (x − mean) / scale`` column by column (``mean = 0``,
            ``scale = 1`` for columns that were not standardised), so ``X * scale + mean``
            recovers the unstandardised encoding.
        raw_train, raw_test: the cleaned source columns of the rows of each split, before
            encoding, including the label, the group and the columns left out of ``X``: integer
            columns as ``int64``, text columns as numpy ``str`` arrays.

    Example:
        >>> import jax
        >>> import jaxsteer
        >>> from jaxsteer.datasets import load_adult
        >>> data = load_adult("sex")            # vendored with the package: no download
        >>> X, y, a = data.train                # float64 [30162, d], int32 [30162] (×2)
        >>> X.shape, X.dtype.name, y.dtype.name, a.dtype.name
        ((30162, 85), 'float64', 'int32', 'int32')
        >>> with jax.enable_x64(True):          # Adult's one-hot covariances need float64
        ...     fam = jaxsteer.fit_family(X, y, a)
        >>> fam.k, fam.m                        # k = 2 classes × m = 2 groups
        (2, 2)
    """

    X_train: np.ndarray
    y_train: np.ndarray
    a_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    a_test: np.ndarray
    feature_names: list[str]
    group_names: tuple[str, ...]
    class_names: tuple[str, ...]
    group: str
    description: str
    feature_blocks: dict[str, slice]
    categorical: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    raw_train: dict[str, np.ndarray]
    raw_test: dict[str, np.ndarray]

    @property
    def train(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(X_train, y_train, a_train)``."""
        return self.X_train, self.y_train, self.a_train

    @property
    def test(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(X_test, y_test, a_test)``."""
        return self.X_test, self.y_test, self.a_test

    @property
    def n_features(self) -> int:
        """``d``, the number of encoded feature columns."""
        return self.X_train.shape[1]

    @property
    def n_classes(self) -> int:
        """``k``, the number of classes."""
        return len(self.class_names)

    @property
    def n_groups(self) -> int:
        """``m``, the number of groups."""
        return len(self.group_names)

    def __repr__(self) -> str:
        return (
            f"TabularData(group={self.group!r}, n_train={self.X_train.shape[0]}, "
            f"n_test={self.X_test.shape[0]}, d={self.n_features}, "
            f"classes={self.class_names!r}, groups={self.group_names!r})"
        )


def read_text(name: str) -> str:
    """The text of the vendored file ``data/<name>`` (gunzipped when ``name`` ends in ``.gz``)."""
    ref = resources.files(_DATA_PACKAGE).joinpath(_DATA_DIR).joinpath(name)
    with ref.open("rb") as fh:
        payload = fh.read()
    if name.endswith(".gz"):
        payload = gzip.decompress(payload)
    return payload.decode("utf-8")


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int; got {seed!r}.")
    return int(seed)


def check_test_size(test_size, arg: str = "test_size") -> float:
    if (
        isinstance(test_size, bool)
        or not isinstance(test_size, numbers.Real)
        or not 0.0 < float(test_size) < 1.0
    ):
        raise ValueError(f"{arg}: expected a float strictly between 0 and 1; got {test_size!r}.")
    return float(test_size)


def check_choice(arg: str, value, allowed) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(
            f"{arg}: unknown value {value!r}; expected one of " + ", ".join(repr(v) for v in allowed) + "."
        )


def check_bool(**flags) -> None:
    for arg, value in flags.items():
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{arg}: expected True or False; got {value!r}.")


def check_drop(drop, droppable, *, group: str, include_group: bool) -> tuple[str, ...]:
    """Validate the ``drop`` argument of a loader: a sequence of names from ``droppable``."""
    if isinstance(drop, str):
        raise ValueError(f"drop: expected a sequence of column names, not a string; got {drop!r}.")
    try:
        drop = tuple(drop)
    except TypeError:
        raise ValueError(f"drop: expected a sequence of column names; got {drop!r}.") from None
    for c in drop:
        if c not in droppable:
            raise ValueError(
                f"drop: unknown feature column {c!r}; expected names from "
                + ", ".join(repr(v) for v in droppable)
                + "."
            )
    if include_group and group in drop:
        raise ValueError(f"drop: contains the group column {group!r}, but include_group=True.")
    return drop


def stratified_split(
    y: np.ndarray, a: np.ndarray, test_size: float, seed: int, arg: str = "test_size"
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/test row indices stratified by the ``(y, a)`` cell.

    Each cell ``(y, a)`` sends ``round(test_size · n_cell)`` of its rows, drawn by
    ``numpy.random.default_rng(seed)``, to the test split, so class × group proportions agree
    between the splits up to rounding. The returned indices are sorted (rows keep file order).

    Returns:
        ``(train_idx, test_idx)``, ``int64`` arrays partitioning ``arange(len(y))``.
    """
    rng = np.random.default_rng(seed)
    cells = np.asarray(y, np.int64) * (int(np.max(a)) + 1) + np.asarray(a, np.int64)
    is_test = np.zeros(len(cells), bool)
    for c in np.unique(cells):
        rows = np.flatnonzero(cells == c)
        n_test = int(round(test_size * rows.size))
        is_test[rng.permutation(rows)[:n_test]] = True
    test_idx = np.flatnonzero(is_test)
    train_idx = np.flatnonzero(~is_test)
    if test_idx.size == 0 or train_idx.size == 0:
        raise ValueError(f"{arg}: {test_size!r} leaves an empty train or test split.")
    return train_idx, test_idx


def encode(
    train: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    columns: list[str],
    categories: dict[str, tuple[str, ...] | None],
    *,
    standardize: bool,
    one_hot: bool,
    drop_first: bool,
):
    """Encode ``columns`` of the raw splits into float matrices, fitting everything on ``train``.

    Args:
        train, test: cleaned source columns (numeric ``int64``/``float64`` or ``str`` arrays).
        columns: the source columns to encode, in the order they appear in ``X``.
        categories: for each categorical column, a preferred category order (``None``: sorted);
            only categories present in ``train`` are kept. Columns not in ``categories`` are
            numeric.
        standardize: centre and scale numeric columns by the train mean and standard deviation
            (``ddof = 0``; a constant column is only centred).
        one_hot: one-hot categorical columns (else integer codes, ``-1`` for unseen categories).
        drop_first: with ``one_hot``, leave out the first category of each block (dummy coding).

    Returns:
        ``(X_train, X_test, feature_names, feature_blocks, mean, scale)``.
    """
    n_tr, n_te = len(next(iter(train.values()))), len(next(iter(test.values())))
    blocks_tr, blocks_te, names, mean, scale, feature_blocks = [], [], [], [], [], {}
    start = 0
    for col in columns:
        xtr, xte = train[col], test[col]
        if col in categories:
            uniq, ctr = np.unique(xtr, return_inverse=True)  # sorted train categories
            present = uniq.tolist()
            order = [c for c in (categories[col] or ()) if c in present]
            cats = order + [c for c in present if c not in order]
            rank = np.array([cats.index(c) for c in present], np.int64)  # sorted → preferred
            ctr = rank[ctr.reshape(-1)]
            pos = np.minimum(np.searchsorted(uniq, xte), len(uniq) - 1)
            cte = np.where(uniq[pos] == xte, rank[pos], -1)
            if one_hot:
                keep = cats[1:] if drop_first else cats
                offset = 1 if drop_first else 0
                eye = np.eye(len(cats) + 1)[:, offset : len(cats)]  # row -1 (unseen) is all zeros
                btr, bte = eye[ctr], eye[cte]
                cols = [f"{col}={c}" for c in keep]
            else:
                btr, bte = ctr[:, None].astype(np.float64), cte[:, None].astype(np.float64)
                cols = [col]
            mu, sd = np.zeros(len(cols)), np.ones(len(cols))
        else:
            btr = np.asarray(xtr, np.float64)[:, None]
            bte = np.asarray(xte, np.float64)[:, None]
            cols = [col]
            if standardize:
                mu = btr.mean(axis=0)
                sd = btr.std(axis=0)
                sd = np.where(sd > 0, sd, 1.0)
                btr, bte = (btr - mu) / sd, (bte - mu) / sd
            else:
                mu, sd = np.zeros(1), np.ones(1)
        blocks_tr.append(btr)
        blocks_te.append(bte)
        names += cols
        mean.append(mu)
        scale.append(sd)
        feature_blocks[col] = slice(start, start + len(cols))
        start += len(cols)
    X_tr = np.concatenate(blocks_tr, axis=1) if blocks_tr else np.zeros((n_tr, 0))
    X_te = np.concatenate(blocks_te, axis=1) if blocks_te else np.zeros((n_te, 0))
    mean = np.concatenate(mean) if mean else np.zeros(0)
    scale = np.concatenate(scale) if scale else np.ones(0)
    return (
        np.ascontiguousarray(X_tr, np.float64),
        np.ascontiguousarray(X_te, np.float64),
        names,
        feature_blocks,
        mean,
        scale,
    )


def encoding_note(*, standardize: bool, one_hot: bool, drop_first: bool) -> str:
    """The sentence of a :attr:`TabularData.description` that says how ``X`` was encoded."""
    num = "Numeric columns standardised with train statistics; " if standardize else "Numeric columns as is; "
    if not one_hot:
        return num + "categorical columns as integer codes. "
    return num + "categorical columns one-hot encoded with train categories" + (
        " (first category dropped). " if drop_first else ". "
    )


def take(columns: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    """Rows ``idx`` of every column (fancy indexing: always fresh, writable copies)."""
    return {k: v[idx] for k, v in columns.items()}


def freeze(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Mark cached columns read-only, so a bug can never write into the cache."""
    for v in columns.values():
        v.setflags(write=False)
    return columns
