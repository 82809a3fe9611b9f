"""``Steerer``: fit a class×group Gaussian model to data, find its nearest ideal family, steer data.

The estimator most users start from (MATH §4):

* **pre-processing protocol** — ``Xs = steerer.fit_transform(X, y, a)`` pushes the labelled training
  data through the subgroup W2 maps onto the ideal family, ``steerer.sample_weight(y, a)`` realises its
  class balance; train any classifier on ``(Xs, y)`` with those weights and apply it to *raw* data;
* **representation protocol** — ``steerer.transform(X, a)`` (no labels) applies the chosen label-free
  group map (``align``, ``moment`` or ``posterior``), e.g. to embeddings at inference time, train and
  test alike.
"""

from __future__ import annotations

import copy
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from jaxsteer import _validate
from jaxsteer import maps as _maps
from jaxsteer._base import BaseSteerer, NotFittedError, as_matrix, encode, float64, like_input
from jaxsteer.estimate import fit_family
from jaxsteer.solve import FORMS, INTERVENTIONS, nearest_ideal

__all__ = ["Steerer"]


def _host(tree, dtype=None):
    """A pytree (statistics, family, solution, map) with numpy array leaves: fitted attributes are
    usable at any JAX precision setting. ``dtype`` casts the floating leaves (default: kept)."""

    def leaf(x):
        x = np.asarray(x)
        return x.astype(dtype) if dtype is not None and np.issubdtype(x.dtype, np.floating) else x

    return jax.tree.map(leaf, tree)


def _labels_given(given, data, arg: str, name: str, n, size: int | None = None) -> np.ndarray:
    """The sorted, unique labels passed as ``arg`` (``classes``/``groups``), else those found in ``data``."""
    if given is None:
        return _validate.labels(data, None, name, n if n is not None else len(data))[1]
    values = np.asarray(given)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"{arg}: expected a non-empty 1-D list of labels, got shape {values.shape}.")
    cats = _validate.labels(values, None, arg, values.shape[0])[1]
    if cats.shape[0] != values.shape[0]:
        raise ValueError(f"{arg}: labels must be distinct, got {values.tolist()}.")
    if size is not None and cats.shape[0] != size:
        raise ValueError(f"{arg}: expected {size} labels (one per code of the statistics), got {cats.shape[0]}.")
    if size is not None and not np.array_equal(cats, values):
        raise ValueError(f"{arg}: list the labels in sorted order (code i is the i-th smallest), got {values.tolist()}.")
    return cats


class Steerer(BaseSteerer):
    """Steer data to the nearest ideal (exactly fair) distribution.

    Args:
        intervention: ``"affirmative"`` (the reference group stays, the others move) or ``"all"``.
        form: ``"affine"`` (any invertible group maps; default, never farther than symmetric) or
            ``"symmetric"`` (the paper's family; convex for ``affirmative``).
        map: the label-free group map used by :meth:`transform` without ``y``: ``"align"``
            (default), ``"moment"`` or ``"posterior"`` (see :mod:`jaxsteer.maps`). The default is
            chosen on evidence (``benchmarks/results/tabular.md``: Adult sex and race, COMPAS race;
            4 EF variants × logistic regression and an MLP, 24 cases): ``align`` had the lowest mean
            test ΔEO (0.081, against 0.127 for ``posterior`` and 0.148 for ``moment``) and the lowest
            in all 8 COMPAS cases, where the raw bias is large (ΔEO 0.23–0.26 → 0.014–0.043), while
            ``posterior`` did not reduce it there (0.21–0.29); ``posterior`` was lowest in 14 of the
            16 Adult cases, where the raw ΔEO is already small. ``align`` is also affine
            and invertible (``inverse_transform``, :class:`jaxsteer.nn.Steer`).
        shrinkage: covariance shrinkage of :func:`~jaxsteer.fit_family` (``"ledoit_wolf"``, a float
            in ``[0, 1]`` or ``None``).
        reference: the group *label* (a value of ``a``) that ``affirmative`` keeps fixed; ``None``
            (default) picks the most frequent group.
        lognormal: model ``log X`` (strictly positive features); maps act as ``exp ∘ T ∘ log``.
        tol, max_iter: solver options of :func:`~jaxsteer.nearest_ideal`.

    Fitted attributes:
        classes_, groups_: the sorted label and group values (codes are positions in these).
        n_features_in_: ``d``.
        family_: the fitted :class:`~jaxsteer.GaussianFamily`.
        solution_: the :class:`~jaxsteer.Solution`.
        subgroup_map_: :class:`~jaxsteer.maps.AffineMap` ``[k, m]`` (used when ``y`` is given).
        group_map_: the label-free group map of kind ``map``.
        weights_: ``[k, m]`` numpy array of ``q̃/q``.
        reference_: the group label held fixed (``affirmative``).
        stats_: the :class:`~jaxsteer.estimate.SuffStats` of all rows seen (numpy float64), from which
            :meth:`partial_fit` continues.

    Example:
        >>> import numpy as np
        >>> from sklearn.linear_model import LogisticRegression
        >>> from jaxsteer import Steerer
        >>> rng = np.random.default_rng(0)
        >>> y, a = rng.integers(0, 2, 1000), rng.choice(["F", "M"], 1000)
        >>> X = rng.normal(size=(1000, 3)) + 0.8 * y[:, None] + (a == "F")[:, None] * [1.0, 0.0, 0.0]
        >>> st = Steerer(intervention="affirmative", form="affine")
        >>> X_fair = st.fit_transform(X, y, a)      # subgroup maps onto the ideal family
        >>> clf = LogisticRegression().fit(X_fair, y, sample_weight=st.sample_weight(y, a))
        >>> clf.predict(X[:5]).shape                # applied to raw data (pre-processing protocol)
        (5,)
        >>> Z = st.transform(X, a)                  # or: the label-free group map, e.g. at inference
        >>> st.reference_, Z.shape                  # the most frequent group stays as it is
        ('M', (1000, 3))
    """

    def __init__(
        self,
        intervention: str = "affirmative",
        form: str = "affine",
        map: str = "align",
        shrinkage="ledoit_wolf",
        reference=None,
        lognormal: bool = False,
        tol: float | None = None,
        max_iter: int = 300,
    ):
        self.intervention = intervention
        self.form = form
        self.map = map
        self.shrinkage = shrinkage
        self.reference = reference
        self.lognormal = lognormal
        self.tol = tol
        self.max_iter = max_iter
        self._validate_params()

    def _validate_params(self) -> None:
        if self.intervention not in INTERVENTIONS:
            raise ValueError(f"intervention: unknown value {self.intervention!r}; choose one of {INTERVENTIONS}.")
        if self.form not in FORMS:
            raise ValueError(f"form: unknown value {self.form!r}; choose one of {FORMS}.")
        if self.map not in _maps.MAP_KINDS:
            raise ValueError(f"map: unknown value {self.map!r}; choose one of {_maps.MAP_KINDS}.")

    # -- fitting ------------------------------------------------------------------------------------

    def fit(self, X, y, a, sample_weight=None) -> "Steerer":
        """Estimate the class×group family of ``(X, y, a)`` and solve for its nearest ideal family.

        Args:
            X: ``[n, d]`` features (numpy or JAX); y: ``[n]`` labels; a: ``[n]`` groups (any sortable
                values); sample_weight: optional ``[n]`` non-negative weights.

        Returns:
            ``self``.
        """
        from jaxsteer import estimate

        self._validate_params()
        X = as_matrix(X)
        n = X.shape[0]
        self.stats_ = None
        yc, classes = encode(y, None, "y", n)
        ac, groups = encode(a, None, "a", n)
        if len(classes) < 2:
            raise ValueError(f"y: found a single class {classes.tolist()}; steering needs at least 2 classes.")
        if len(groups) < 2:
            raise ValueError(f"a: found a single group {groups.tolist()}; steering needs at least 2 groups.")
        with _validate.cell_names(classes, groups):  # messages name the user's labels, not codes
            family = fit_family(X, yc, ac, shrinkage=self.shrinkage, lognormal=self.lognormal,
                                sample_weight=sample_weight)
        # the mergeable statistics too, so that partial_fit can continue from this data
        self.stats_ = _host(estimate.from_data(jnp.log(X) if self.lognormal else X, yc, ac, len(classes),
                                               len(groups), sample_weight))
        self.classes_seen_, self.groups_seen_, self.pending_ = classes, groups, None
        return self._solve(family, classes, groups, np.bincount(ac, minlength=len(groups)))

    def partial_fit(self, X, y, a, sample_weight=None, *, classes=None, groups=None) -> "Steerer":
        """Add a batch of rows to the running statistics and re-solve: for data that does not fit in memory.

        The statistics (:class:`~jaxsteer.estimate.SuffStats`, float64) are exact: after any split of
        the rows into batches the model equals ``fit`` on all of them. The solve is warm-started from
        the previous batch's solution where the problem is convex (``affirmative``, ``symmetric``);
        otherwise each call solves cold, as ``fit`` does. Until every class×group cell has enough rows for a covariance
        (2, or more than ``d`` when Ledoit–Wolf estimates no shrinkage) the steerer keeps the statistics
        and is not fitted yet: using it raises :class:`~jaxsteer.NotFittedError` naming the cell.

        Args:
            X, y, a, sample_weight: one batch, as in :meth:`fit`.
            classes, groups: every class and group label, on the first call (as scikit-learn's
                ``partial_fit(classes=)``). Without them the first batch's labels are all there is, and
                a later batch with a new label raises ``ValueError``. Ignored on later calls.

        After :meth:`fit` (or :meth:`from_stats`) ``partial_fit`` continues from that data.

        Returns:
            ``self``.

        Example:
            >>> import numpy as np
            >>> from jaxsteer import Steerer
            >>> rng = np.random.default_rng(0)
            >>> st = Steerer(form="symmetric")
            >>> for _ in range(4):                     # batches read one at a time
            ...     y, a = rng.integers(0, 2, 500), rng.choice(["F", "M"], 500)
            ...     X = rng.normal(size=(500, 3)) + 0.8 * y[:, None] + (a == "F")[:, None]
            ...     st = st.partial_fit(X, y, a, classes=[0, 1], groups=["F", "M"])
            >>> int(st.stats_.n_rows.sum()), bool(st.solution_.converged)
            (2000, True)
        """
        from jaxsteer import estimate

        self._validate_params()
        X = as_matrix(X)
        n = X.shape[0]
        if getattr(self, "stats_", None) is None:
            self.classes_seen_ = _labels_given(classes, y, "classes", "y", n)
            self.groups_seen_ = _labels_given(groups, a, "groups", "a", n)
            self.stats_ = estimate.SuffStats.zeros(len(self.classes_seen_), len(self.groups_seen_), X.shape[1],
                                                   jnp.float64)
            for attr in ("n_features_in_", "family_", "solution_"):
                self.__dict__.pop(attr, None)
        elif X.shape[1] != self.stats_.shape[2]:
            raise ValueError(f"X: has {X.shape[1]} features but earlier batches had {self.stats_.shape[2]}.")
        yc, _ = encode(y, self.classes_seen_, "y", n)
        ac, _ = encode(a, self.groups_seen_, "a", n)
        if self.lognormal:
            _validate.finite_rows(X, positive=True)
            X = jnp.log(X)
        self.stats_ = _host(estimate.update(self.stats_, X, yc, ac, sample_weight))
        self.pending_ = None
        if np.any(np.asarray(self.stats_.n_rows) < 2):
            return self
        try:
            with _validate.cell_names(self.classes_seen_, self.groups_seen_):
                family = estimate.to_family(self.stats_, shrinkage=self.shrinkage, lognormal=self.lognormal)
        except ValueError as err:  # too little data in some cell so far: wait for more batches
            self.pending_ = str(err)
            for attr in ("n_features_in_", "family_", "solution_"):
                self.__dict__.pop(attr, None)
            return self
        # Warm starts only where the problem is convex: elsewhere a warm start stays in its own local
        # minimum, and the cold solve (several starts) is what fit would find.
        convex = self.intervention == "affirmative" and self.form == "symmetric"
        init = getattr(self, "solution_", None) if convex else None
        return self._solve(family, self.classes_seen_, self.groups_seen_,
                           np.asarray(self.stats_.n_rows).sum(axis=0), init=init)

    @classmethod
    @float64
    def from_stats(cls, stats, *, classes=None, groups=None, **params) -> "Steerer":
        """A fitted ``Steerer`` from precomputed statistics (e.g. merged from several hosts).

        Args:
            stats: :class:`~jaxsteer.estimate.SuffStats` ``[k, m, ...]`` built with
                :func:`~jaxsteer.estimate.from_data` / :func:`~jaxsteer.estimate.update` and combined
                with :func:`~jaxsteer.estimate.merge` (of ``log X`` when ``lognormal=True``), in float64
                (lower precision is used with a ``RuntimeWarning``).
            classes, groups: the labels of the codes ``0..k−1`` and ``0..m−1`` (default: the codes).
            **params: constructor parameters (``intervention``, ``form``, ``map``, ``shrinkage``,
                ``reference`` as a label, ...).

        Returns:
            A fitted ``Steerer``; ``partial_fit`` continues from ``stats``.

        Example:
            >>> import jax, numpy as np
            >>> from jaxsteer import Steerer, estimate
            >>> rng = np.random.default_rng(0)
            >>> def host(n):                           # statistics computed where the data live
            ...     y, a = rng.integers(0, 2, n), rng.integers(0, 2, n)
            ...     X = rng.normal(size=(n, 3)) + 0.8 * y[:, None] + a[:, None]
            ...     return estimate.from_data(X, y, a, 2, 2)
            >>> with jax.enable_x64(True):             # float64 statistics, as the Steerer keeps them
            ...     stats = estimate.merge(host(800), host(1200))
            >>> st = Steerer.from_stats(stats, groups=["F", "M"])
            >>> st.groups_.tolist(), int(st.stats_.n_rows.sum())
            (['F', 'M'], 2000)
        """
        from jaxsteer import estimate

        if not isinstance(stats, estimate.SuffStats):
            raise TypeError(f"stats: expected jaxsteer.estimate.SuffStats, got {type(stats).__name__}.")
        k, m, _ = stats.shape
        if stats.mean.dtype != jnp.float64:
            warnings.warn(
                f"stats: {stats.mean.dtype} statistics carry about 7 significant digits; build them in float64 "
                "(inside `with jax.enable_x64(True):`) for results that match fit.",
                RuntimeWarning,
                stacklevel=3,
            )
        st = cls(**params)
        st.classes_seen_ = _labels_given(classes, np.arange(k), "classes", "y", None, size=k)
        st.groups_seen_ = _labels_given(groups, np.arange(m), "groups", "a", None, size=m)
        st.stats_ = _host(stats, np.float64)
        with _validate.cell_names(st.classes_seen_, st.groups_seen_):
            family = estimate.to_family(st.stats_, shrinkage=st.shrinkage, lognormal=st.lognormal)
        return st._solve(family, st.classes_seen_, st.groups_seen_, np.asarray(stats.n_rows).sum(axis=0))

    def _solve(self, family, classes, groups, group_rows, init=None) -> "Steerer":
        """Solve for the nearest ideal family of ``family`` and set the fitted attributes."""
        if len(classes) < 2:
            raise ValueError(f"y: found a single class {classes.tolist()}; steering needs at least 2 classes.")
        if len(groups) < 2:
            raise ValueError(f"a: found a single group {groups.tolist()}; steering needs at least 2 groups.")
        if self.reference is None:
            ref = int(np.argmax(group_rows))
        else:
            hits = np.flatnonzero(groups == np.asarray(self.reference, dtype=groups.dtype))
            if hits.size != 1:
                raise ValueError(f"reference: {self.reference!r} is not a group in a (groups: {groups.tolist()}).")
            ref = int(hits[0])
        if init is not None and int(init.reference) != ref:
            init = None  # the most frequent group changed: a warm start for another reference is useless
        solution = nearest_ideal(
            family, intervention=self.intervention, form=self.form, reference=ref, tol=self.tol,
            max_iter=self.max_iter, init=init,
        )
        if not bool(np.all(np.asarray(solution.converged))):
            warnings.warn(
                f"Steerer: the solver stopped before reaching tol (residual {float(solution.residual):.3g} after "
                f"{int(solution.iterations)} Newton steps): {solution.messages()[0]}. The target is the best "
                "point found.",
                RuntimeWarning,
                stacklevel=3,
            )
        self.classes_, self.groups_ = classes, groups
        self.reference_ = groups[ref].item()
        self.n_features_in_ = family.d
        # Fitted pytrees hold numpy float64 leaves: the estimator's own methods run with float64
        # enabled and use them at full precision, while a user who applies them directly at JAX's
        # default float32 gets float32 results without dtype-truncation warnings.
        self.family_ = _host(family)
        self.solution_ = _host(solution)
        self.subgroup_map_ = _host(_maps.subgroup_maps(family, solution))
        self.group_map_ = _host(_maps.group_maps(family, solution, self.map))
        self.weights_ = np.asarray(solution.weights)
        return self

    def _check_fitted(self, attr: str = "n_features_in_") -> None:
        stats = getattr(self, "stats_", None)
        if not hasattr(self, attr) and stats is not None:
            rows = np.asarray(stats.n_rows)
            if getattr(self, "pending_", None):
                why = self.pending_
            else:
                with _validate.cell_names(self.classes_seen_, self.groups_seen_):
                    why = _validate.cells(rows < 2, lambda i, g: f"has {rows[i, g]} row{'' if rows[i, g] == 1 else 's'}")
                why += "; every class×group cell needs at least 2 rows"
            raise NotFittedError(
                f"This Steerer has statistics from partial_fit but is not fitted yet: {why}. Call partial_fit "
                "with more data."
            )
        super()._check_fitted(attr)

    # -- steering -----------------------------------------------------------------------------------

    def transform(self, X, a, y=None):
        """Steer ``X``: subgroup maps when ``y`` is given, else the label-free group map ``map``.

        Args:
            X: ``[n, d]``; a: ``[n]`` group labels; y: optional ``[n]`` class labels.

        Returns:
            ``[n, d]`` steered features (numpy for numpy input, JAX for JAX input).
        """
        self._check_fitted()
        Xa = as_matrix(X, d=self.n_features_in_)
        n = Xa.shape[0]
        ac, _ = encode(a, self.groups_, "a", n)
        Xa = Xa.astype(self.family_.dtype)
        if self.lognormal and not bool(jnp.all(Xa > 0)):
            raise ValueError("X: a log-normal steerer needs strictly positive features.")
        if y is None:
            out = self.group_map_.apply(Xa, jnp.asarray(ac))
        else:
            yc, _ = encode(y, self.classes_, "y", n)
            out = self.subgroup_map_.apply(Xa, jnp.asarray(yc), jnp.asarray(ac))
        return like_input(out, X)

    def with_map(self, map: str) -> "Steerer":
        """A copy with another label-free group map (``"align"``, ``"moment"`` or ``"posterior"``),
        sharing this one's fitted family and solution: no new solve.

        Example:
            >>> import numpy as np
            >>> from jaxsteer import Steerer
            >>> rng = np.random.default_rng(0)
            >>> y, a = rng.integers(0, 2, 400), rng.integers(0, 2, 400)
            >>> X = rng.normal(size=(400, 2)) + np.c_[y, a]
            >>> st = Steerer(map="align").fit(X, y, a)
            >>> post = st.with_map("posterior")
            >>> post.map, post.solution_ is st.solution_, type(post.group_map_).__name__
            ('posterior', True, 'PosteriorMap')
        """
        self._check_fitted()
        if map not in _maps.MAP_KINDS:
            raise ValueError(f"map: unknown group map {map!r}; choose one of {_maps.MAP_KINDS}.")
        out = copy.copy(self)
        out.map = map
        if map != self.map:
            out.group_map_ = _host(_maps.group_maps(self.family_, self.solution_, map))
        return out

    def fit_transform(self, X, y, a, sample_weight=None):
        """``fit(X, y, a)`` then ``transform(X, a, y)``: the steered training data (subgroup maps)."""
        return self.fit(X, y, a, sample_weight=sample_weight).transform(X, a, y)

    def inverse_transform(self, X, a, y=None):
        """Undo :meth:`transform` (affine maps only; ``map="posterior"`` has no inverse)."""
        self._check_fitted()
        Xa = as_matrix(X, d=self.n_features_in_).astype(self.family_.dtype)
        n = Xa.shape[0]
        ac, _ = encode(a, self.groups_, "a", n)
        if y is None:
            out = self.group_map_.inverse().apply(Xa, jnp.asarray(ac))
        else:
            yc, _ = encode(y, self.classes_, "y", n)
            out = self.subgroup_map_.inverse().apply(Xa, jnp.asarray(yc), jnp.asarray(ac))
        return like_input(out, X)

    def sample_weight(self, y, a) -> np.ndarray:
        """Per-row weights ``q̃[y, a] / q[y, a]`` realising the ideal family's class balance, ``[n]``."""
        self._check_fitted()
        n = np.asarray(y).shape[0]
        yc, _ = encode(y, self.classes_, "y", n)
        ac, _ = encode(a, self.groups_, "a", n)
        return self.weights_[yc, ac]

    # -- reporting ----------------------------------------------------------------------------------

    def report(self) -> str:
        """A plain-text summary: the model, the KL to the ideal family, convergence, certificates."""
        self._check_fitted()
        from jaxsteer.certificates import certificate

        sol, fam = self.solution_, self.family_
        cert = certificate(sol)
        k, m, d = fam.k, fam.m, fam.d
        lines = [
            f"Steerer(intervention={self.intervention!r}, form={self.form!r}, map={self.map!r})",
            f"  data: d={d} features, k={k} classes {self.classes_.tolist()}, m={m} groups {self.groups_.tolist()}"
            + (f", reference group {self.reference_!r}" if self.intervention == "affirmative" else ""),
            f"  KL(ideal ‖ fitted) = {float(sol.kl):.6g} nats (features {float(sol.kl_features):.6g}, "
            f"class balance {float(sol.kl_priors):.6g})",
            f"  solver: converged={bool(sol.converged)} ({sol.messages()[0]}), {int(sol.iterations)} Newton "
            f"steps, residual {float(sol.residual):.3g}",
            f"  certificate: any classifier's error moves by ≤ {float(cert.tv_bound):.4g} (Pinsker); "
            f"a rule exactly fair on the ideal family has ΔEO ≤ {float(cert.eo_bound):.4g} on the fitted one",
            "  subgroup KL and sample weights (class × group):",
        ]
        skl, w = np.asarray(sol.subgroup_kl), self.weights_
        for i in range(k):
            cells = ", ".join(
                f"{self.groups_[g].item()!r}: KL {max(skl[i, g], 0.0):.4g}, w {w[i, g]:.4g}" for g in range(m)
            )
            lines.append(f"    class {self.classes_[i].item()!r}: {cells}")
        return "\n".join(lines)
