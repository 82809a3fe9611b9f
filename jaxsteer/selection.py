"""Choose an EF steering variant on validation data: :func:`select`.

Which EF variant helps depends on the data and the classifier (``benchmarks/results/tabular.md``:
the variant with the lowest test ΔEO changes from setting to setting). :func:`select` makes that
choice the honest way — on a validation split, never on the test split:

1. it fits one :class:`~jaxsteer.Steerer` per ``(intervention, form)`` on the training data;
2. for every **candidate** ``(intervention, form, map, protocol)`` it trains the classifier on the
   steered training data, with the ideal family's sample weights, and scores it on the validation
   data:

   * ``protocol="pre"`` (pre-processing): train on the training data pushed through the subgroup
     maps (labels needed, ``map`` is ``None``), predict on *raw* validation data;
   * ``protocol="rep"`` (representation): apply the label-free group map ``map`` (``"align"``,
     ``"moment"`` or ``"posterior"``) to training and validation data alike (the group is needed at
     prediction time);

3. it trains the same classifier on the raw training data without weights (the *unsteered*
   reference row) and applies the **criterion**.

Criteria (``criterion=``), all on validation metrics:

* ``"eo"`` (default): the lowest ΔEO (equal-opportunity difference: the largest gap between groups
  in the true-positive rate of the ``positive`` class) among the candidates whose accuracy is at
  least the unsteered model's minus ``tolerance``; if no candidate is that accurate, the most
  accurate candidate. Ties go to the higher accuracy, then to the earlier candidate.
* ``"eodds"``, ``"dp"``: the same with the equalized-odds difference or the demographic-parity
  difference in place of ΔEO.
* ``"pareto"``: the candidate with the lowest ΔEO among those on the accuracy–ΔEO Pareto front
  (the ``tolerance`` is not used); every row's ``pareto`` flag and :attr:`Selection.front` give
  the whole front, :attr:`Selection.steerers` every candidate's fitted steerer to pick another.

The ``pareto`` flag is computed for every criterion: a row (the unsteered reference included) is on
the front when no other row has an accuracy at least as high and a ΔEO at least as low, one of them
strictly.

Example:
    >>> import numpy as np
    >>> import jaxsteer as js
    >>> from jaxsteer.selection import default_candidates
    >>> rng = np.random.default_rng(0)
    >>> def split(n):
    ...     y, a = rng.integers(0, 2, n), rng.choice(["F", "M"], n)
    ...     X = rng.normal(size=(n, 1)) + 0.8 * y[:, None] + (a == "F")[:, None]
    ...     return X, y, a
    >>> (X_tr, y_tr, a_tr), (X_va, y_va, a_va) = split(600), split(300)
    >>> X_test, _, a_test = split(5)
    >>> cands = default_candidates(interventions=("affirmative",), forms=("affine",), maps=("align", "moment"))
    >>> sel = js.select(X_tr, y_tr, a_tr, X_val=X_va, y_val=y_va, a_val=a_va, candidates=cands)
    >>> print(sel.markdown())                 # one row per candidate + the unsteered model
    criterion 'eo', tolerance 0.01: ...
    | candidate | accuracy | ΔDP | ΔEO | EOdds | KL | fit s | eligible | Pareto | chosen |
    |---|---|---|---|---|---|---|---|---|---|
    | unsteered | ...
    | EF affirmative/affine, pre | ...
    | EF affirmative/affine [align], rep | ...
    | EF affirmative/affine [moment], rep | ...
    >>> sel.choice in cands                   # Candidate(intervention=..., form=..., map=..., protocol=...)
    True
    >>> sel.predict(X_test, a_test).shape     # the chosen steerer's protocol + its fitted classifier
    (5,)
    >>> sel.steerer.groups_.tolist()          # a fitted Steerer
    ['F', 'M']
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import numbers
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from jaxsteer import maps as _maps
from jaxsteer import metrics as _metrics
from jaxsteer._base import as_matrix, encode
from jaxsteer.solve import FORMS, INTERVENTIONS
from jaxsteer.steerer import Steerer

__all__ = ["Candidate", "Selection", "select", "default_candidates", "CRITERIA", "PROTOCOLS"]

CRITERIA = ("eo", "eodds", "dp", "pareto")
PROTOCOLS = ("pre", "rep")
_METRIC_OF = {"eo": "eo", "eodds": "eodds", "dp": "dp", "pareto": "eo"}


class Candidate(NamedTuple):
    """One EF variant: ``(intervention, form, map, protocol)``; ``map`` is ``None`` for ``"pre"``."""

    intervention: str
    form: str
    map: str | None
    protocol: str

    @property
    def name(self) -> str:
        """A short label, e.g. ``"EF affirmative/symmetric, pre"`` or ``"EF all/affine [align], rep"``."""
        mp = "" if self.map is None else f" [{self.map}]"
        return f"EF {self.intervention}/{self.form}{mp}, {self.protocol}"


def default_candidates(
    interventions=INTERVENTIONS, forms=FORMS, maps=_maps.MAP_KINDS, protocols=PROTOCOLS
) -> tuple[Candidate, ...]:
    """Every ``intervention × form × (pre, or rep × map)`` (16 with the defaults), in that order.

    Example:
        >>> from jaxsteer.selection import default_candidates
        >>> len(default_candidates())
        16
        >>> default_candidates(interventions=("affirmative",), forms=("symmetric",), maps=("align",))
        (Candidate(intervention='affirmative', form='symmetric', map=None, protocol='pre'),
         Candidate(intervention='affirmative', form='symmetric', map='align', protocol='rep'))
    """
    out = []
    for inter in interventions:
        for form in forms:
            if "pre" in protocols:
                out.append(Candidate(inter, form, None, "pre"))
            if "rep" in protocols:
                out += [Candidate(inter, form, kind, "rep") for kind in maps]
    return tuple(out)


@dataclass(frozen=True, eq=False)
class Selection:
    """The result of :func:`select`.

    Attributes:
        steerer: the chosen candidate's fitted :class:`~jaxsteer.Steerer` (its ``map`` is the
            candidate's label-free map; ``"align"`` for a ``"pre"`` candidate).
        choice: the chosen :class:`Candidate`.
        classifier: the classifier fitted for the chosen candidate (on the steered, weighted
            training data); :meth:`predict` applies it with the candidate's protocol.
        table: one dict per row, the unsteered reference first, then the candidates in order. Keys:
            ``name``, ``intervention``, ``form``, ``map``, ``protocol`` (``"-"`` for the reference),
            ``reference`` (bool), validation ``acc``, ``dp``, ``eo``, ``eodds``, ``kl`` (KL of the
            ideal family to the fitted one; ``None`` for the reference), ``converged`` (the solver's
            flag), ``fit_s`` (seconds to fit the candidate's steerer — shared by the candidates of
            one ``(intervention, form)``, ``0`` for the reference), ``clf_s`` (seconds to steer and
            train the classifier), ``eligible`` (accuracy within ``tolerance`` of the reference;
            ``None`` for the reference), ``pareto`` (on the accuracy–ΔEO front), ``chosen``.
        criterion, tolerance, positive: as passed (``positive`` as a label of ``y``).
        reason: the choice in words.
        steerers: ``{Candidate: fitted Steerer}`` for every candidate.
        classifiers: ``{Candidate: fitted classifier}`` for every candidate, and ``None`` → the
            unsteered classifier.
    """

    steerer: Steerer
    choice: Candidate
    classifier: Any
    table: tuple
    criterion: str
    tolerance: float
    positive: Any
    reason: str
    steerers: dict
    classifiers: dict
    _fits: dict = field(repr=False, default_factory=dict)
    _fingerprint: str = field(repr=False, default="")

    @property
    def front(self) -> tuple[Candidate, ...]:
        """The candidates on the accuracy–ΔEO Pareto front (validation), in table order."""
        return tuple(
            Candidate(r["intervention"], r["form"], r["map"], r["protocol"])
            for r in self.table
            if r["pareto"] and not r["reference"]
        )

    @property
    def reference(self) -> dict:
        """The unsteered model's row of :attr:`table`."""
        return self.table[0]

    def row(self, candidate=None) -> dict:
        """The table row of ``candidate`` (default: the chosen one)."""
        cand = self.choice if candidate is None else _as_candidate(candidate, "candidate")
        for r in self.table[1:]:
            if (r["intervention"], r["form"], r["map"], r["protocol"]) == tuple(cand):
                return r
        raise ValueError(f"candidate: {tuple(cand)!r} was not among the candidates of this selection.")

    def predict(self, X, a, candidate=None):
        """Predict with a candidate's fitted classifier and protocol (default: the chosen one).

        ``"pre"``: the classifier on raw ``X``; ``"rep"``: on ``steerer.transform(X, a)``. ``a`` is
        checked against the training groups either way.
        """
        cand = self.choice if candidate is None else _as_candidate(candidate, "candidate")
        if cand not in self.steerers:
            raise ValueError(f"candidate: {tuple(cand)!r} was not among the candidates of this selection.")
        st, clf = self.steerers[cand], self.classifiers[cand]
        Xm = np.asarray(as_matrix(X, "X", st.n_features_in_))
        encode(a, st.groups_, "a", Xm.shape[0])
        Z = Xm if cand.protocol == "pre" else np.asarray(st.transform(Xm, a))
        return np.asarray(clf.predict(Z))

    def markdown(self) -> str:
        """The table as Markdown (validation metrics)."""
        lines = [
            f"criterion {self.criterion!r}, tolerance {self.tolerance:g}: {self.reason}",
            "",
            "| candidate | accuracy | ΔDP | ΔEO | EOdds | KL | fit s | eligible | Pareto | chosen |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.table:
            kl = "" if r["kl"] is None else f"{r['kl']:.4f}"
            el = "" if r["eligible"] is None else ("yes" if r["eligible"] else "no")
            lines.append(
                f"| {r['name']} | {r['acc']:.4f} | {r['dp']:.4f} | {r['eo']:.4f} | {r['eodds']:.4f} | {kl} | "
                f"{r['fit_s']:.2f} | {el} | {'yes' if r['pareto'] else ''} | {'**yes**' if r['chosen'] else ''} |"
            )
        return "\n".join(lines) + "\n"


# -- validation -------------------------------------------------------------------------------------


def _as_candidate(c, where: str) -> Candidate:
    if isinstance(c, dict):
        try:
            c = (c["intervention"], c["form"], c.get("map"), c["protocol"])
        except KeyError as e:
            raise ValueError(f"{where}: a dict candidate needs the key {e.args[0]!r}.") from None
    if not isinstance(c, tuple) or len(c) != 4:
        raise ValueError(
            f"{where}: expected a Candidate or a 4-tuple (intervention, form, map, protocol), got {c!r}."
        )
    inter, form, kind, protocol = c
    if inter not in INTERVENTIONS:
        raise ValueError(f"{where}: unknown intervention {inter!r}; choose one of {INTERVENTIONS}.")
    if form not in FORMS:
        raise ValueError(f"{where}: unknown form {form!r}; choose one of {FORMS}.")
    if protocol not in PROTOCOLS:
        raise ValueError(f"{where}: unknown protocol {protocol!r}; choose one of {PROTOCOLS}.")
    if protocol == "pre" and kind is not None:
        raise ValueError(
            f"{where}: protocol 'pre' trains on the subgroup maps' output and predicts on raw data; its map "
            f"must be None, got {kind!r}."
        )
    if protocol == "rep" and kind not in _maps.MAP_KINDS:
        raise ValueError(f"{where}: protocol 'rep' needs a label-free map, one of {_maps.MAP_KINDS}; got {kind!r}.")
    return Candidate(inter, form, kind, protocol)


def _check_candidates(candidates) -> tuple[Candidate, ...]:
    if candidates is None:
        return default_candidates()
    if isinstance(candidates, (str, bytes)) or not hasattr(candidates, "__iter__"):
        raise ValueError(f"candidates: expected a sequence of Candidate / 4-tuples, got {candidates!r}.")
    if isinstance(candidates, tuple) and len(candidates) == 4 and isinstance(candidates[0], str):
        raise ValueError("candidates: got a single candidate; wrap it in a list: candidates=[(...)].")
    out = tuple(_as_candidate(c, f"candidates[{i}]") for i, c in enumerate(candidates))
    if not out:
        raise ValueError("candidates: empty; pass at least one candidate (or None for all 16).")
    seen = set()
    for i, c in enumerate(out):
        if c in seen:
            raise ValueError(f"candidates[{i}]: {tuple(c)!r} appears twice.")
        seen.add(c)
    return out


def _check_tolerance(tolerance) -> float:
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real):
        raise ValueError(f"tolerance: expected a non-negative number (an accuracy difference), got {tolerance!r}.")
    tol = float(tolerance)
    if not tol >= 0:
        raise ValueError(f"tolerance: must be >= 0 (float('inf') disables the accuracy constraint), got {tolerance!r}.")
    return tol


def _accepts_sample_weight(fit) -> bool:
    try:
        params = inspect.signature(fit).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: assume it does
        return True
    return any(p.name == "sample_weight" or p.kind == p.VAR_KEYWORD for p in params)


def _default_classifier():
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError as e:  # pragma: no cover - scikit-learn is installed in the test environment
        raise ImportError(
            "select: the default classifier is scikit-learn's LogisticRegression, and scikit-learn is not "
            "installed; install it (pip install 'jaxsteer[study]') or pass classifier= an object with "
            "fit(X, y, sample_weight=...) and predict(X)."
        ) from e
    return LogisticRegression(max_iter=2000)


def _check_classifier(classifier):
    if classifier is None:
        return _default_classifier()
    for meth in ("fit", "predict"):
        if not callable(getattr(classifier, meth, None)):
            raise ValueError(
                f"classifier: {classifier!r} has no {meth}() method; pass an (unfitted) estimator with "
                "fit(X, y, sample_weight=...) and predict(X), e.g. sklearn.linear_model.LogisticRegression()."
            )
    if not _accepts_sample_weight(classifier.fit):
        raise ValueError(
            f"classifier: {type(classifier).__name__}.fit does not accept sample_weight; the EF candidates "
            "train with the ideal family's class-balance weights."
        )
    return classifier


def _clone(classifier):
    """A fresh unfitted copy: ``sklearn.base.clone`` for scikit-learn-style estimators, else a deep copy."""
    if hasattr(classifier, "get_params"):
        try:
            from sklearn.base import clone
        except ImportError:  # pragma: no cover - get_params without scikit-learn installed
            return copy.deepcopy(classifier)
        try:
            return clone(classifier)
        except (TypeError, RuntimeError):  # get_params that does not round-trip through __init__
            return copy.deepcopy(classifier)
    return copy.deepcopy(classifier)


_STEERER_KEYS = ("shrinkage", "reference", "lognormal", "tol", "max_iter")


def _check_steerer_options(options) -> dict:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ValueError(f"steerer_options: expected a dict of Steerer arguments, got {options!r}.")
    for key in options:
        if key not in _STEERER_KEYS:
            raise ValueError(
                f"steerer_options: {key!r} is not allowed (intervention, form and map come from the candidates); "
                f"allowed keys: {_STEERER_KEYS}."
            )
    return dict(options)


def _fingerprint(X, y, a, options) -> str:
    h = hashlib.sha1()
    h.update(repr((X.shape, str(X.dtype))).encode())
    h.update(np.ascontiguousarray(X).tobytes())
    for v in (y, a):
        v = np.asarray(v)
        h.update(str(v.dtype).encode())
        h.update(np.ascontiguousarray(v).tobytes() if v.dtype.kind != "O" else repr(v.tolist()).encode())
    h.update(repr(sorted(options.items())).encode())
    return h.hexdigest()


# -- scoring ----------------------------------------------------------------------------------------


def _score(y_codes, pred, a_codes, classes, m: int, pos: int) -> dict:
    p, _ = encode(pred, classes, "classifier predictions", y_codes.shape[0])
    return dict(
        acc=float(_metrics.accuracy(y_codes, p)),
        dp=float(_metrics.demographic_parity_difference(p, a_codes, num_groups=m, positive=pos)),
        eo=float(_metrics.equal_opportunity_difference(y_codes, p, a_codes, num_groups=m, positive=pos)),
        eodds=float(_metrics.equalized_odds_difference(y_codes, p, a_codes, num_groups=m, positive=pos)),
    )


def _pareto(rows) -> list[bool]:
    out = []
    for r in rows:
        dominated = any(
            (s["acc"] >= r["acc"] and s["eo"] <= r["eo"]) and (s["acc"] > r["acc"] or s["eo"] < r["eo"])
            for s in rows
        )
        out.append(not dominated)
    return out


def select(
    X,
    y,
    a,
    *,
    X_val,
    y_val,
    a_val,
    candidates=None,
    classifier=None,
    criterion: str = "eo",
    tolerance: float = 0.01,
    positive=None,
    steerer_options: dict | None = None,
    reuse: Selection | None = None,
) -> Selection:
    """Fit EF candidates on ``(X, y, a)``, score them on the validation data, choose one.

    Args:
        X, y, a: training features ``[n, d]``, labels ``[n]`` and groups ``[n]`` (any sortable values).
        X_val, y_val, a_val: validation data (keyword-only); labels and groups must occur in training.
        candidates: a sequence of :class:`Candidate` (or 4-tuples ``(intervention, form, map,
            protocol)``); ``None`` (default) is :func:`default_candidates` — all 16.
        classifier: an unfitted estimator with ``fit(X, y, sample_weight=...)`` and ``predict(X)``,
            cloned for every row (``sklearn.base.clone`` when it has ``get_params``, else a deep
            copy); default ``sklearn.linear_model.LogisticRegression(max_iter=2000)`` (needs
            scikit-learn: ``pip install 'jaxsteer[study]'``).
        criterion: ``"eo"`` (default), ``"eodds"``, ``"dp"`` or ``"pareto"`` (see the module doc).
        tolerance: accuracy a candidate may lose against the unsteered model and stay eligible
            (default ``0.01``; ``float('inf')`` makes every candidate eligible).
        positive: the label whose true-positive rate ΔEO compares (default: the largest label of
            ``y``, i.e. ``1`` for 0/1 labels); other labels count as negative.
        steerer_options: extra :class:`~jaxsteer.Steerer` arguments (``shrinkage``, ``reference``,
            ``lognormal``, ``tol``, ``max_iter``).
        reuse: an earlier :class:`Selection` on the *same* training data and ``steerer_options``
            (checked by a hash): its fitted steerers (and their fit seconds) are reused, e.g. to
            score another classifier without solving again.

    Returns:
        :class:`Selection` (``.steerer``, ``.choice``, ``.table``, ``.classifier``, ``.predict``).

    Raises:
        ValueError: a malformed argument (the message names it); ImportError: scikit-learn missing and
        no ``classifier`` given.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion: unknown value {criterion!r}; choose one of {CRITERIA}.")
    tol = _check_tolerance(tolerance)
    cands = _check_candidates(candidates)
    options = _check_steerer_options(steerer_options)
    if reuse is not None and not isinstance(reuse, Selection):
        raise ValueError(f"reuse: expected a Selection from an earlier select() call or None, got {type(reuse).__name__}.")
    Xm = np.asarray(as_matrix(X, "X"))
    n, d = Xm.shape
    yc, classes = encode(y, None, "y", n)
    ac, groups = encode(a, None, "a", n)
    if len(classes) < 2:
        raise ValueError(f"y: found a single class {classes.tolist()}; steering needs at least 2 classes.")
    if len(groups) < 2:
        raise ValueError(f"a: found a single group {groups.tolist()}; steering needs at least 2 groups.")
    Xv = np.asarray(as_matrix(X_val, "X_val"))
    if Xv.shape[1] != d:
        raise ValueError(f"X_val: has {Xv.shape[1]} features but X has {d}; pass the same columns.")
    nv = Xv.shape[0]
    yvc, _ = encode(y_val, classes, "y_val", nv)
    avc, _ = encode(a_val, groups, "a_val", nv)
    if positive is None:
        pos = len(classes) - 1
    else:
        hits = np.flatnonzero(classes == np.asarray(positive, dtype=classes.dtype))
        if hits.size != 1:
            raise ValueError(f"positive: {positive!r} is not a label of y (labels: {classes.tolist()}).")
        pos = int(hits[0])
    clf0 = _check_classifier(classifier)
    m = len(groups)
    y_arr, a_arr = np.asarray(y).reshape(-1), np.asarray(a).reshape(-1)
    fp = _fingerprint(Xm, y_arr, a_arr, options)
    if reuse is not None and reuse._fingerprint != fp:
        raise ValueError(
            "reuse: that Selection was fitted on other training data (or other steerer_options); its "
            "steerers cannot be reused here."
        )

    # the unsteered reference
    t0 = time.perf_counter()
    base = _clone(clf0).fit(Xm, y_arr)
    ref = dict(
        name="unsteered", intervention=None, form=None, map=None, protocol="-", reference=True,
        **_score(yvc, base.predict(Xv), avc, classes, m, pos),
        kl=None, converged=None, fit_s=0.0, clf_s=time.perf_counter() - t0, eligible=None,
    )

    fits = dict(reuse._fits) if reuse is not None else {}
    steerers, classifiers, rows, unconverged = {}, {None: base}, [], []
    for cand in cands:
        key = (cand.intervention, cand.form)
        if key not in fits:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # the convergence flag goes in the table
                st = Steerer(intervention=cand.intervention, form=cand.form, **options).fit(Xm, y_arr, a_arr)
            fits[key] = (st, time.perf_counter() - t0)
        st, fit_s = fits[key]
        converged = bool(np.all(np.asarray(st.solution_.converged)))
        if not converged and key not in unconverged:
            unconverged.append(key)
        t0 = time.perf_counter()
        w = st.sample_weight(y_arr, a_arr)
        if cand.protocol == "pre":
            st_c = st
            Ztr, Zv = np.asarray(st.transform(Xm, a_arr, y_arr)), Xv
        else:
            st_c = st.with_map(cand.map)  # shares the fitted family and solution
            Ztr, Zv = np.asarray(st_c.transform(Xm, a_arr)), np.asarray(st_c.transform(Xv, np.asarray(a_val).reshape(-1)))
        clf = _clone(clf0).fit(Ztr, y_arr, sample_weight=w)
        scores = _score(yvc, clf.predict(Zv), avc, classes, m, pos)
        steerers[cand], classifiers[cand] = st_c, clf
        rows.append(dict(
            name=cand.name, intervention=cand.intervention, form=cand.form, map=cand.map, protocol=cand.protocol,
            reference=False, **scores, kl=float(st.solution_.kl), converged=converged, fit_s=fit_s,
            clf_s=time.perf_counter() - t0, eligible=bool(scores["acc"] >= ref["acc"] - tol),
        ))

    table = [ref] + rows
    for r, on in zip(table, _pareto(table)):
        r["pareto"] = on
    metric = _METRIC_OF[criterion]
    order = range(len(rows))
    if criterion == "pareto":
        pool = [i for i in order if rows[i]["pareto"]]
        what = "on the accuracy–ΔEO Pareto front"
    else:
        pool = [i for i in order if rows[i]["eligible"]]
        what = f"with validation accuracy ≥ {ref['acc']:.4f} − {tol:g} (the unsteered model's minus the tolerance)"
    label = {"eo": "ΔEO", "eodds": "EOdds", "dp": "ΔDP"}[metric]
    if pool:
        best = min(pool, key=lambda i: (rows[i][metric], -rows[i]["acc"], i))
        reason = (f"{len(pool)} of {len(rows)} candidates {what}; chose {rows[best]['name']} with the lowest "
                  f"validation {label} {rows[best][metric]:.4f} (accuracy {rows[best]['acc']:.4f}; unsteered "
                  f"{ref[metric]:.4f}, {ref['acc']:.4f}).")
    else:
        best = min(order, key=lambda i: (-rows[i]["acc"], rows[i][metric], i))
        reason = (f"no candidate {what}; fell back to the most accurate, {rows[best]['name']} (accuracy "
                  f"{rows[best]['acc']:.4f}, {label} {rows[best][metric]:.4f}; unsteered {ref['acc']:.4f}, "
                  f"{ref[metric]:.4f}).")
    for i, r in enumerate(table):
        r["chosen"] = i == best + 1
    if unconverged:
        warnings.warn(
            "select: the solver stopped before reaching tol for "
            + ", ".join(f"{i}/{f}" for i, f in unconverged)
            + " (the table's 'converged' column); their targets are the best points found.",
            RuntimeWarning,
            stacklevel=2,
        )
    choice = cands[best]
    return Selection(
        steerer=steerers[choice], choice=choice, classifier=classifiers[choice], table=tuple(table),
        criterion=criterion, tolerance=tol, positive=classes[pos].item(), reason=reason, steerers=steerers,
        classifiers=classifiers, _fits=fits, _fingerprint=fp,
    )
