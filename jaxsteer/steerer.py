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

import warnings

import jax.numpy as jnp
import numpy as np

from jaxsteer import _validate
from jaxsteer import maps as _maps
from jaxsteer._base import BaseSteerer, as_matrix, encode, like_input
from jaxsteer.estimate import fit_family
from jaxsteer.solve import FORMS, INTERVENTIONS, nearest_ideal

__all__ = ["Steerer"]


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

    Example:
        >>> st = Steerer(intervention="affirmative", form="affine")
        >>> X_fair = st.fit_transform(X_train, y_train, a_train)
        >>> clf.fit(X_fair, y_train, sample_weight=st.sample_weight(y_train, a_train))
        >>> clf.predict(X_test)                 # raw test data (pre-processing protocol)
        >>> Z_test = st.transform(X_test, a_test)  # or: label-free map at inference
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
        self._validate_params()
        X = as_matrix(X)
        n = X.shape[0]
        yc, classes = encode(y, None, "y", n)
        ac, groups = encode(a, None, "a", n)
        if len(classes) < 2:
            raise ValueError(f"y: found a single class {classes.tolist()}; steering needs at least 2 classes.")
        if len(groups) < 2:
            raise ValueError(f"a: found a single group {groups.tolist()}; steering needs at least 2 groups.")
        if self.reference is None:
            ref = int(np.argmax(np.bincount(ac, minlength=len(groups))))
        else:
            hits = np.flatnonzero(groups == np.asarray(self.reference, dtype=groups.dtype))
            if hits.size != 1:
                raise ValueError(f"reference: {self.reference!r} is not a group in a (groups: {groups.tolist()}).")
            ref = int(hits[0])
        with _validate.cell_names(classes, groups):  # messages name the user's labels, not codes
            family = fit_family(X, yc, ac, shrinkage=self.shrinkage, lognormal=self.lognormal,
                                sample_weight=sample_weight)
        solution = nearest_ideal(
            family, intervention=self.intervention, form=self.form, reference=ref, tol=self.tol, max_iter=self.max_iter
        )
        if not bool(np.all(np.asarray(solution.converged))):
            warnings.warn(
                f"Steerer: the solver stopped before reaching tol (residual {float(solution.residual):.3g} after "
                f"{int(solution.iterations)} Newton steps): {solution.messages()[0]}. The target is the best "
                "point found.",
                RuntimeWarning,
                stacklevel=2,
            )
        self.classes_, self.groups_ = classes, groups
        self.reference_ = groups[ref].item()
        self.n_features_in_ = X.shape[1]
        self.family_ = family
        self.solution_ = solution
        self.subgroup_map_ = _maps.subgroup_maps(family, solution)
        self.group_map_ = _maps.group_maps(family, solution, self.map)
        self.weights_ = np.asarray(solution.weights)
        return self

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
