"""ProPublica COMPAS (Broward County): predict two-year recidivism with ``race`` or ``sex`` as the group."""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Sequence

import numpy as np

from jaxsteer.datasets import _tabular
from jaxsteer.datasets._tabular import TabularData

__all__ = ["load_compas"]

#: Integer columns of ``compas-two-years.csv.gz``; the others are text.
NUMERIC = (
    "age",
    "juv_fel_count",
    "juv_misd_count",
    "juv_other_count",
    "priors_count",
    "days_b_screening_arrest",
    "is_recid",
    "is_violent_recid",
    "decile_score",
    "v_decile_score",
    "two_year_recid",
)
LABEL = "two_year_recid"
#: Candidate features, in ``X`` column order (the COMPAS outputs only with ``include_scores``).
FEATURES = (
    "sex",
    "age",
    "age_cat",
    "race",
    "juv_fel_count",
    "juv_misd_count",
    "juv_other_count",
    "priors_count",
    "c_charge_degree",
)
SCORES = ("decile_score", "score_text")
#: Category orders for one-hot blocks and integer codes (other text columns: sorted).
_ORDER = {
    "age_cat": ("Less than 25", "25 - 45", "Greater than 45"),
    "score_text": ("Low", "Medium", "High"),
}
_GROUPS = {
    "race": ("race", ("African-American", "Caucasian")),
    "sex": ("sex", ("Male", "Female")),
}
_DEFAULT_DROP = ("age_cat",)

_CITATION = (
    "Larson, J., Mattu, S., Kirchner, L. & Angwin, J. (2016). How We Analyzed the COMPAS "
    "Recidivism Algorithm. ProPublica. https://github.com/propublica/compas-analysis "
    "(compas-scores-two-years.csv)."
)


@functools.lru_cache(maxsize=None)
def _raw() -> dict[str, np.ndarray]:
    """The 6,172 rows that pass ProPublica's filter (cached, read-only columns).

    The filter (ProPublica's analysis notebook): ``-30 <= days_b_screening_arrest <= 30`` (a
    missing value fails it), ``is_recid != -1``, ``c_charge_degree != 'O'``,
    ``score_text != 'N/A'``.
    """
    reader = csv.reader(io.StringIO(_tabular.read_text("compas-two-years.csv.gz")))
    header = next(reader)
    j = {c: i for i, c in enumerate(header)}
    days, recid, degree, score = (
        j["days_b_screening_arrest"], j["is_recid"], j["c_charge_degree"], j["score_text"]
    )
    rows = []
    for r in reader:
        if not r:
            continue
        if len(r) != len(header):
            raise ValueError(f"compas: malformed row with {len(r)} fields: {r!r}")
        r = [f.strip() for f in r]
        try:
            d = int(r[days])
        except ValueError:  # missing: fails the filter, as NA does in ProPublica's R code
            continue
        if -30 <= d <= 30 and r[recid] != "-1" and r[degree] != "O" and r[score] != "N/A":
            rows.append(r)
    cols = {}
    for name, values in zip(header, zip(*rows)):
        cols[name] = np.array(values, dtype=np.int64 if name in NUMERIC else str)
    return _tabular.freeze(cols)


def load_compas(
    group: str = "race",
    *,
    test_size: float = 0.3,
    seed: int = 0,
    standardize: bool = True,
    one_hot: bool = True,
    drop_first: bool = False,
    include_group: bool = False,
    include_scores: bool = False,
    drop: Sequence[str] = _DEFAULT_DROP,
) -> TabularData:
    """ProPublica's COMPAS two-year recidivism data (Broward County, 2013–2014).

    Rows: ProPublica's filter keeps ``-30 <= days_b_screening_arrest <= 30`` (rows with no value
    are dropped), ``is_recid != -1``, ``c_charge_degree != 'O'`` and ``score_text != 'N/A'``:
    6,172 of 7,214 rows.

    Label ``y``: ``two_year_recid``, ``1`` = re-offended within two years (rate 0.455 over the
    6,172 rows). Note that ``y = 1`` is the *unfavourable* outcome here.

    Group ``a`` (code 0 is the disadvantaged group):

    * ``group="race"`` (default): only African-American (0) and Caucasian (1) defendants are kept,
      5,278 rows, the comparison of ProPublica's analysis.
    * ``group="sex"``: ``Male`` = 0, ``Female`` = 1, all 6,172 rows (COMPAS scores men as
      higher-risk; the convention of e.g. AIF360, which treats Female as privileged); ``race``
      (six categories) is then a feature.

    Features ``X`` (in this order, less the dropped ones): ``sex``, ``age``, ``age_cat``, ``race``,
    ``juv_fel_count``, ``juv_misd_count``, ``juv_other_count``, ``priors_count``,
    ``c_charge_degree`` (``F`` felony / ``M`` misdemeanour), and with ``include_scores=True``
    ``decile_score`` and ``score_text``.

    * ``age_cat`` (``Less than 25`` / ``25 - 45`` / ``Greater than 45``) is dropped by default: it
      is a function of ``age``, which is kept.
    * ``decile_score`` and ``score_text`` are left out unless ``include_scores=True``: they are
      the outputs of the COMPAS tool whose fairness is in question, not facts about the
      defendant. The violent-recidivism score (``v_decile_score``, ``v_score_text``) and the
      outcome columns (``is_recid``, ``is_violent_recid``) are never features (they stay in
      ``raw_*``), nor is ``days_b_screening_arrest`` (only used to filter).
    * The sensitive column is left out of ``X`` by default (``include_group=False``), so that the
      group information a steering or erasure method has to remove is the one the other features
      carry, and group-aware models receive ``a`` explicitly; ``include_group=True`` encodes it
      like any other categorical column.
    * Numeric columns are standardised with the train mean and standard deviation (``ddof = 0``)
      when ``standardize=True``; categorical columns are one-hot encoded with the categories of
      the train split (a category unseen in train encodes as all zeros), not standardised.

    With the defaults and ``group="race"``, ``d = 9``: ``sex`` (2 one-hot columns), ``age``, the
    three juvenile counts, ``priors_count`` and ``c_charge_degree`` (2). A full one-hot block sums
    to 1 in every row, so the feature covariance is singular; fit Gaussian models with shrinkage
    (the default of :func:`jaxsteer.fit_family`) or pass ``drop_first=True``.

    There is no official split: ``test_size`` of the rows of every ``(y, a)`` cell (rounded) go
    to the test split, drawn with ``numpy.random.default_rng(seed)``; the same arguments always
    give the same split.

    Args:
        group: the sensitive attribute, ``"race"`` or ``"sex"``.
        test_size: fraction of rows in the test split, a float in ``(0, 1)``.
        seed: seed of the split, a non-negative int.
        standardize: standardise the numeric columns with train statistics.
        one_hot: one-hot encode categorical columns; ``False`` gives one column of integer codes
            per categorical column (``age_cat`` and ``score_text`` in their natural order, the
            others sorted; ``-1`` for unseen test categories), not standardised.
        drop_first: with ``one_hot``, leave out each block's first category (dummy coding).
        include_group: keep the sensitive column among the features.
        include_scores: add the COMPAS outputs ``decile_score`` and ``score_text`` as features.
        drop: feature columns left out of ``X`` (default ``("age_cat",)``); they stay in
            :attr:`TabularData.raw_train` / ``raw_test``.

    Returns:
        A :class:`TabularData`: ``X_train [n_train, d]`` float64, ``y_train``/``a_train``
        ``[n_train]`` int32, likewise for test; ``n_train + n_test`` = 5,278 (race) or 6,172
        (sex).

    Raises:
        ValueError: naming the argument, for an unknown ``group``, a ``test_size`` outside
            ``(0, 1)``, a negative or non-integer ``seed``, a non-bool flag, or an unknown column
            in ``drop``.

    Example:
        >>> import jaxsteer
        >>> from jaxsteer.datasets import load_compas
        >>> data = load_compas("race", test_size=0.3, seed=0)
        >>> data.X_train.shape, data.X_test.shape
        ((3695, 9), (1583, 9))
        >>> data.group_names, data.class_names
        (('African-American', 'Caucasian'), ('no recidivism', 'recidivism'))
        >>> fam = jaxsteer.fit_family(*data.train)
        >>> fam.k, fam.m, fam.d
        (2, 2, 9)
    """
    _tabular.check_choice("group", group, tuple(_GROUPS))
    _tabular.check_bool(
        standardize=standardize,
        one_hot=one_hot,
        drop_first=drop_first,
        include_group=include_group,
        include_scores=include_scores,
    )
    candidates = FEATURES + (SCORES if include_scores else ())
    drop = _tabular.check_drop(drop, candidates, group=group, include_group=include_group)
    test_size = _tabular.check_test_size(test_size, "test_size")
    seed = _tabular.check_seed(seed)

    column, group_names = _GROUPS[group]
    raw = _raw()
    keep = np.flatnonzero(np.isin(raw[column], group_names))
    rows = _tabular.take(raw, keep)
    lookup = {g: i for i, g in enumerate(group_names)}
    a = np.array([lookup[v] for v in rows[column].tolist()], np.int32)
    y = rows[LABEL].astype(np.int32)
    tr_idx, te_idx = _tabular.stratified_split(y, a, test_size, seed)
    train, test = _tabular.take(rows, tr_idx), _tabular.take(rows, te_idx)

    features = [c for c in candidates if c not in drop and (include_group or c != group)]
    categories = {c: _ORDER.get(c) for c in features if c not in NUMERIC}
    X_tr, X_te, names, blocks, mean, scale = _tabular.encode(
        train, test, features, categories,
        standardize=standardize, one_hot=one_hot, drop_first=drop_first,
    )
    left_out = list(drop) + ([] if include_group or group in drop else [f"{group} (the group)"])
    description = (
        "ProPublica COMPAS two-year recidivism (Broward County): predict two_year_recid "
        "(y=1: re-offended within two years, y=0: did not). "
        f"Group: {group} ({', '.join(f'{i}={g}' for i, g in enumerate(group_names))}). "
        "Rows: ProPublica's filter (|days_b_screening_arrest| <= 30, is_recid != -1, "
        "c_charge_degree != 'O', score_text != 'N/A')"
        + (", African-American and Caucasian only" if group == "race" else "")
        + f"; {len(tr_idx)} train / {len(te_idx)} test rows from a random split (test fraction "
        f"{test_size}, seed {seed}, stratified by (y, a)). "
        f"Features: {', '.join(features)}"
        + (f"; left out: {', '.join(left_out)}" if left_out else "")
        + ("" if include_scores else "; the COMPAS scores are not features")
        + ". "
        + _tabular.encoding_note(standardize=standardize, one_hot=one_hot, drop_first=drop_first)
        + _CITATION
    )
    return TabularData(
        X_train=X_tr,
        y_train=y[tr_idx],
        a_train=a[tr_idx],
        X_test=X_te,
        y_test=y[te_idx],
        a_test=a[te_idx],
        feature_names=names,
        group_names=group_names,
        class_names=("no recidivism", "recidivism"),
        group=group,
        description=description,
        feature_blocks=blocks,
        categorical=tuple(categories),
        mean=mean,
        scale=scale,
        raw_train=train,
        raw_test=test,
    )
