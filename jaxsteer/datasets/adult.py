"""UCI Adult (Census Income): predict ``income > 50K`` with ``sex`` or ``race`` as the group."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from jaxsteer.datasets import _tabular
from jaxsteer.datasets._tabular import TabularData

__all__ = ["load_adult"]

#: The 15 columns of ``adult.data`` / ``adult.test``, named as in ``adult.names``.
COLUMNS = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
)
NUMERIC = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week")
LABEL = "income"
FEATURES = tuple(c for c in COLUMNS if c != LABEL)
RACES = ("Amer-Indian-Eskimo", "Asian-Pac-Islander", "Black", "Other", "White")
_GROUPS = ("sex", "race")
_DEFAULT_DROP = ("fnlwgt", "education")

_CITATION = (
    "Becker, B. & Kohavi, R. (1996). Adult [Data set]. UCI Machine Learning Repository. "
    "https://doi.org/10.24432/C5XW20 (CC BY 4.0)."
)


def _parse(text: str) -> dict[str, np.ndarray]:
    """Cleaned columns of one Adult file: whitespace stripped, rows with ``?`` dropped, the test
    file's ``|1x3 Cross validator`` line skipped and its labels' trailing ``.`` removed."""
    lines = [
        line
        for line in text.replace(", ", ",").splitlines()
        if line.strip() and not line.startswith("|") and "?" not in line
    ]
    fields = ",".join(lines).split(",")
    if len(fields) != len(COLUMNS) * len(lines):
        bad = next(line for line in lines if line.count(",") != len(COLUMNS) - 1)
        raise ValueError(f"adult: malformed row (expected {len(COLUMNS)} fields): {bad!r}")
    table = np.char.strip(np.array(fields).reshape(len(lines), len(COLUMNS)))
    cols = {}
    for j, name in enumerate(COLUMNS):
        cols[name] = table[:, j].astype(np.int64) if name in NUMERIC else table[:, j].copy()
    cols[LABEL] = np.char.rstrip(cols[LABEL], ".")  # the test file writes ">50K." and "<=50K."
    return cols


@functools.lru_cache(maxsize=None)
def _raw() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The cleaned official train and test columns (cached, read-only)."""
    train = _tabular.freeze(_parse(_tabular.read_text("adult.data.gz")))
    test = _tabular.freeze(_parse(_tabular.read_text("adult.test.gz")))
    return train, test


def load_adult(
    group: str = "sex",
    *,
    test: str | float = "official",
    seed: int = 0,
    standardize: bool = True,
    one_hot: bool = True,
    drop_first: bool = False,
    include_group: bool = False,
    binary_race: bool = True,
    drop: Sequence[str] = _DEFAULT_DROP,
) -> TabularData:
    """The UCI Adult data set (1994 US census extract): predict ``income > 50K``.

    Cleaning: fields are whitespace-stripped, rows with a missing value (``?``) are dropped
    (30,162 official train rows, 15,060 official test rows, 45,222 in all), the test file's
    ``|1x3 Cross validator`` header line is skipped and its labels' trailing ``.`` removed.

    Label ``y``: ``1`` for ``>50K`` (train positive rate 0.249), ``0`` for ``<=50K``.

    Group ``a`` (code 0 is the disadvantaged group):

    * ``group="sex"``: ``Female`` = 0, ``Male`` = 1.
    * ``group="race"`` with ``binary_race=True`` (default): non-White = 0, ``White`` = 1 (the
      usual binarisation: the non-White races are 14% of the rows, and some are too small to
      estimate per-cell statistics from).
    * ``group="race"`` with ``binary_race=False``: the five races in alphabetical order,
      ``Amer-Indian-Eskimo`` = 0, ``Asian-Pac-Islander`` = 1, ``Black`` = 2, ``Other`` = 3,
      ``White`` = 4.

    Features ``X`` (the 14 attributes, in file order, less the dropped ones):

    * ``fnlwgt`` is dropped by default: it is the census sampling weight (how many people a row
      stands for), not an attribute of the person.
    * ``education`` is dropped by default: it is in one-to-one correspondence with
      ``education-num`` (16 levels), which is kept.
    * The sensitive column is left out of ``X`` by default (``include_group=False``): steering
      and concept-erasure methods are asked to remove group information that the *other*
      features carry (``relationship`` = ``Husband``/``Wife`` is a strong proxy for ``sex``), and
      group-aware models receive ``a`` explicitly. With ``include_group=True`` the source column
      is encoded like every other categorical column (for ``race``, all five races, whatever
      ``binary_race`` is). The other sensitive column (``race`` when ``group="sex"``, ``sex`` when
      ``group="race"``) is an ordinary feature.
    * Numeric columns (``age``, ``education-num``, ``capital-gain``, ``capital-loss``,
      ``hours-per-week``, and ``fnlwgt`` if kept) are standardised with the train mean and
      standard deviation (``ddof = 0``) when ``standardize=True``. Categorical columns are
      one-hot encoded with the categories of the train split, sorted (a test category unseen in
      train, e.g. in a random split, encodes as all zeros); one-hot columns are not standardised.

    With the defaults and ``group="sex"``, ``d = 85``: 5 numeric columns and the one-hot blocks of
    ``workclass`` (7), ``marital-status`` (7), ``occupation`` (14), ``relationship`` (6),
    ``race`` (5) and ``native-country`` (41). A full one-hot block sums to 1 in every row, so the
    feature covariance is singular; fit Gaussian models with shrinkage (the default of
    :func:`jaxsteer.fit_family`) or pass ``drop_first=True``.

    Args:
        group: the sensitive attribute, ``"sex"`` or ``"race"``.
        test: ``"official"`` (default) keeps the UCI split (``adult.data`` / ``adult.test``, drawn
            2/3 : 1/3 at random by the donors); a float in ``(0, 1)`` pools the 45,222 clean rows
            and sends that fraction to the test split, stratified by ``(y, a)`` and drawn with
            ``seed``.
        seed: seed of the random split (ignored for the official split).
        standardize: standardise the numeric columns with train statistics.
        one_hot: one-hot encode categorical columns; ``False`` gives one column of integer codes
            per categorical column (categories sorted, ``-1`` for unseen test categories), not
            standardised.
        drop_first: with ``one_hot``, leave out each block's first category (dummy coding), so the
            blocks are no longer collinear with the intercept.
        include_group: keep the sensitive column among the features (see above).
        binary_race: with ``group="race"``, White vs non-White (default) or the five races.
        drop: feature columns left out of ``X`` (default ``("fnlwgt", "education")``); they stay in
            :attr:`TabularData.raw_train` / ``raw_test``.

    Returns:
        A :class:`TabularData`: ``X_train [n_train, d]`` float64, ``y_train``/``a_train``
        ``[n_train]`` int32, likewise for test; with the official split ``n_train = 30162``,
        ``n_test = 15060``.

    Raises:
        ValueError: naming the argument, for an unknown ``group``, a ``test`` that is neither
            ``"official"`` nor a float in ``(0, 1)``, a negative or non-integer ``seed``, a
            non-bool flag, or an unknown column in ``drop``.

    Example:
        >>> import jax
        >>> import jaxsteer
        >>> from jaxsteer.datasets import load_adult
        >>> data = load_adult("sex")
        >>> data.X_train.shape, data.X_test.shape
        ((30162, 85), (15060, 85))
        >>> data.group_names, data.class_names
        (('Female', 'Male'), ('<=50K', '>50K'))
        >>> with jax.enable_x64(True):          # float32 rejects these covariances as too ill-conditioned
        ...     fam = jaxsteer.fit_family(*data.train)
        >>> rnd = load_adult("race", test=0.3, seed=1)   # a stratified random 70/30 split
        >>> rnd.X_train.shape, rnd.group_names
        ((31656, 82), ('non-White', 'White'))
    """
    _tabular.check_choice("group", group, _GROUPS)
    _tabular.check_bool(
        standardize=standardize,
        one_hot=one_hot,
        drop_first=drop_first,
        include_group=include_group,
        binary_race=binary_race,
    )
    drop = _tabular.check_drop(drop, FEATURES, group=group, include_group=include_group)
    official = isinstance(test, str) and test == "official"
    if not official:
        if isinstance(test, str):
            raise ValueError(f"test: expected 'official' or a float strictly between 0 and 1; got {test!r}.")
        test = _tabular.check_test_size(test, "test")
    seed = _tabular.check_seed(seed)

    raw_tr, raw_te = _raw()
    if official:
        train = _tabular.take(raw_tr, np.arange(len(raw_tr[LABEL])))
        test_cols = _tabular.take(raw_te, np.arange(len(raw_te[LABEL])))
    else:
        pooled = {c: np.concatenate([raw_tr[c], raw_te[c]]) for c in COLUMNS}
        y_all = (pooled[LABEL] == ">50K").astype(np.int32)
        a_all, _ = _groups(pooled, group, binary_race)
        tr_idx, te_idx = _tabular.stratified_split(y_all, a_all, test, seed, "test")
        train, test_cols = _tabular.take(pooled, tr_idx), _tabular.take(pooled, te_idx)

    a_tr, group_names = _groups(train, group, binary_race)
    a_te, _ = _groups(test_cols, group, binary_race)
    features = [c for c in FEATURES if c not in drop and (include_group or c != group)]
    categories = {c: None for c in features if c not in NUMERIC}
    X_tr, X_te, names, blocks, mean, scale = _tabular.encode(
        train, test_cols, features, categories,
        standardize=standardize, one_hot=one_hot, drop_first=drop_first,
    )
    left_out = list(drop) + ([] if include_group or group in drop else [f"{group} (the group)"])
    split = (
        "the official UCI split"
        if official
        else f"a random split (test fraction {test}, seed {seed}, stratified by (y, a))"
    )
    description = (
        "UCI Adult (Census Income, 1994 CPS extract): predict income >50K (y=1) vs <=50K (y=0). "
        f"Group: {group} ({', '.join(f'{i}={g}' for i, g in enumerate(group_names))}). "
        "Rows with missing values ('?') dropped; "
        f"{len(a_tr)} train / {len(a_te)} test rows from {split}. "
        f"Features: {', '.join(features)}"
        + (f"; left out: {', '.join(left_out)}" if left_out else "")
        + ". "
        + _tabular.encoding_note(standardize=standardize, one_hot=one_hot, drop_first=drop_first)
        + _CITATION
    )
    return TabularData(
        X_train=X_tr,
        y_train=(train[LABEL] == ">50K").astype(np.int32),
        a_train=a_tr,
        X_test=X_te,
        y_test=(test_cols[LABEL] == ">50K").astype(np.int32),
        a_test=a_te,
        feature_names=names,
        group_names=group_names,
        class_names=("<=50K", ">50K"),
        group=group,
        description=description,
        feature_blocks=blocks,
        categorical=tuple(categories),
        mean=mean,
        scale=scale,
        raw_train=train,
        raw_test=test_cols,
    )


def _groups(cols: dict[str, np.ndarray], group: str, binary_race: bool) -> tuple[np.ndarray, tuple[str, ...]]:
    if group == "sex":
        return (cols["sex"] == "Male").astype(np.int32), ("Female", "Male")
    if binary_race:
        return (cols["race"] == "White").astype(np.int32), ("non-White", "White")
    lookup = {r: i for i, r in enumerate(RACES)}
    return np.array([lookup[r] for r in cols["race"].tolist()], np.int32), RACES
