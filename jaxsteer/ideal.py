"""Ideal distributions (MATH §2): the conditions under which every cost-sensitive Bayes rule is fair.

A family ``θ`` is *ideal* when the group-aware Bayes rule
``h_C(x, a) = argmin_j Σ_i C[i, j] q(i|a) f_ia(x)`` is exactly fair (equalized odds and demographic
parity) for every cost matrix ``C``. This module measures how far a family is from the *symmetric*
condition (the paper's Proposition 3.2) or from the *affine-template* condition (MATH §2):

* :func:`ideal_residuals` — the residuals of a condition, as :class:`IdealResiduals`;
* :func:`is_ideal` — whether they are all below a tolerance.

The rates and gaps of the Bayes rule itself live in :mod:`jaxsteer.bayes` (:func:`bayes_rates_1d`,
:func:`bayes_rates_mc`, :func:`bayes_rates_linear`, :func:`bayes_predict`) and the 1-D
Jensen–Shannon quadrature in :mod:`jaxsteer.divergence` (:func:`js_divergence_1d`); both are
re-exported here, so ``jaxsteer.ideal.bayes_rates_1d`` is :func:`jaxsteer.bayes.bayes_rates_1d`.

Log-normal families (``family.lognormal``) are handled as the Gaussian family of ``log X``: the map
``log`` is a bijection, so the ideal conditions are unchanged by it.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsteer import _linalg
from jaxsteer._analytics import base_rates, check_family, field_or_index
from jaxsteer.bayes import BayesRates, BayesRatesMC, bayes_predict, bayes_rates_1d, bayes_rates_linear, bayes_rates_mc
from jaxsteer.divergence import js_divergence_1d
from jaxsteer.family import GaussianFamily

__all__ = [
    "FORMS",
    "IdealResiduals",
    "ideal_residuals",
    "is_ideal",
    # re-exported from jaxsteer.bayes and jaxsteer.divergence
    "BayesRates",
    "BayesRatesMC",
    "bayes_rates_1d",
    "bayes_rates_mc",
    "bayes_rates_linear",
    "bayes_predict",
    "js_divergence_1d",
]

#: Forms of the ideal condition understood by :func:`ideal_residuals` and :func:`is_ideal`.
FORMS = ("symmetric", "affine")


class IdealResiduals(NamedTuple):
    """Residuals of an ideal condition, each ``[...]`` (the family's batch shape); zero when it holds.

    A NamedTuple of arrays (a pytree, through ``jit`` and ``vmap``); read ``res.features`` or, as
    from the dict of earlier versions, ``res["features"]``. ``r._asdict()`` gives a dict.

    Attributes:
        priors: ``max_{i,a,a'} |q(i|a) − q(i|a')|``, the spread of the base rates across groups.
        features: the spread across groups of the whitened features (see :func:`ideal_residuals`).
    """

    priors: jax.Array
    features: jax.Array

    __getitem__ = field_or_index


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _check_form(form) -> None:
    if form not in FORMS:
        raise ValueError(f"form: must be one of {FORMS}; got {form!r}.")


def _check_reference_class(reference_class, k: int) -> int:
    if not isinstance(reference_class, (int, np.integer)) or isinstance(reference_class, bool):
        raise ValueError(f"reference_class: must be a Python int; got {reference_class!r}.")
    c = int(reference_class)
    if not 0 <= c < k:
        raise ValueError(f"reference_class: must lie in [0, k) = [0, {k}); got {c}.")
    return c


def _group_spread(x: jax.Array, nb: int) -> jax.Array:
    """Max over entries of ``(max_a x − min_a x) / max(1, max_a |x|)``; group axis at ``nb``.

    ``x`` has shape ``batch (nb axes) + (m,) + rest``; returns ``batch``.
    """
    hi = jnp.max(x, axis=nb)
    lo = jnp.min(x, axis=nb)
    scale = jnp.maximum(1.0, jnp.max(jnp.abs(x), axis=nb))
    r = (hi - lo) / scale
    if r.ndim > nb:
        r = jnp.max(r, axis=tuple(range(nb, r.ndim)))
    return r


def _whiten(family: GaussianFamily, c: int):
    """Whitened configuration of every group.

    Returns ``δ_ia = W_a(μ_ia − μ_ca)`` ``[..., k, m, d]`` and ``G_ia = W_a Σ_ia W_a``
    ``[..., k, m, d, d]`` with ``W_a = Σ_ca^{-1/2}``.
    """
    w = _linalg.psd_inv_sqrt(family.covs[..., c, :, :, :])  # [..., m, d, d]
    diff = family.means - family.means[..., c : c + 1, :, :]
    delta = jnp.einsum("...apq,...iaq->...iap", w, diff)
    g = jnp.einsum("...apq,...iaqr,...ars->...iaps", w, _linalg.sym(family.covs), w)
    return delta, _linalg.sym(g)


# ---------------------------------------------------------------------------------------------
# ideal conditions
# ---------------------------------------------------------------------------------------------


def ideal_residuals(
    family: GaussianFamily, *, form: str = "symmetric", reference_class: int = 0
) -> IdealResiduals:
    """Non-negative residuals of the ideal conditions of MATH §2 (zero when the condition holds).

    Let ``c = reference_class`` and ``W_a = Σ_ca^{-1/2}`` (symmetric inverse square root). Every
    group is whitened by its reference-class covariance: ``δ_ia = W_a(μ_ia − μ_ca)`` and
    ``G_ia = W_a Σ_ia W_a``. These are dimensionless, so differences are reported *relative with a
    floor of one*: for each compared quantity ``x_a``,
    ``(max_a x_a − min_a x_a) / max(1, max_a |x_a|)``, maximised over all entries.

    Returned fields (each an array of shape ``family.batch_shape``):

    * ``priors`` — ``max_{i,a,a'} |q(i|a) − q(i|a')|`` (absolute; probabilities).
    * ``features`` — depends on ``form``:

      - ``"symmetric"`` (the paper's Proposition 3.2): relative spread across groups of ``δ_ia``
        and of ``G_ia``, entrywise. Zero iff the symmetric condition holds.
      - ``"affine"`` with ``d == 1`` (exact): the ratios ``σ_ia/σ_ca`` must agree across groups and
        ``v_a = ((μ_ia − μ_ca)/σ_ca)_i`` must equal ``±v_0`` (one sign per group, for all ``i``;
        a decreasing affine map flips it). The residual is the larger of the relative spread of the
        ratios and ``max_a min_± max_i |v_ia ∓ v_i0| / max(1, |v_ia|, |v_i0|)``. Zero iff the
        affine-template condition holds.
      - ``"affine"`` with ``d > 1``: the affine-template condition holds iff (with equal base
        rates) there are orthogonal ``U_a`` with ``δ_ia = U_a δ_i0`` and ``G_ia = U_a G_i0 U_aᵀ``
        for all classes (polar decomposition of ``A_a Γ_c^{1/2}``). The residual is the relative
        spread across groups of these orthogonal invariants, for the non-reference classes
        ``i, j, l`` (``δ_c = 0`` and ``G_c = I`` carry no information):

          * the sorted eigenvalues of each ``G_i``;
          * ``δ_iᵀ (G_j/τ_j)^r δ_l`` for ``r = 0 … d−1`` (``r = 0`` is the Gram matrix
            ``δ_iᵀδ_l``; ``τ_j = tr G_j / d`` only normalises the magnitude);
          * ``tr(G_i G_j)`` and ``tr(G_i G_j G_l)``.

        Equality of these invariants is always **necessary**. It is also **sufficient** (in exact
        arithmetic) when ``k == 2`` for any ``d`` and any eigenvalue multiplicities (the
        eigenvalues fix ``G`` up to rotation and the moments ``δᵀG^rδ`` fix, through a Vandermonde
        system, the norm of ``δ`` in every eigenspace of ``G``), and when ``d == 2`` for any ``k``
        (an ``O(2)`` argument on the vectors ``δ_i`` and the traceless parts of ``G_i``). For
        ``k ≥ 3`` and ``d ≥ 3`` it is a necessary condition only: the listed invariants do not
        generate all ``O(d)``-invariants of several matrices and vectors (words such as
        ``δ_iᵀ G_j G_l δ_p`` or longer traces are omitted), so two exotic non-equivalent
        configurations could agree on them. Near-repeated eigenvalues make the sufficiency
        quantitatively weak (small residual, but possibly a larger distance to an ideal family).

    The ``"affine"`` condition is implied by the ``"symmetric"`` one, so its residual is zero
    whenever the symmetric residual is (up to rounding).

    Args:
        family: a :class:`GaussianFamily` with any leading batch axes. For a log-normal family the
            parameters of ``log X`` are used (the conditions are invariant under ``log``).
        form: ``"symmetric"`` or ``"affine"``.
        reference_class: the class ``c`` whose covariance whitens every group.

    Returns:
        :class:`IdealResiduals` ``(priors, features)``; ``res.features`` or ``res["features"]``.

    Raises:
        ValueError: for an unknown ``form`` or a ``reference_class`` outside ``[0, k)``.

    Example:
        Group 1 is group 0 reflected (``x ↦ −x``): affine-ideal, not symmetric-ideal.

        >>> from jaxsteer import GaussianFamily
        >>> from jaxsteer.ideal import ideal_residuals
        >>> fam = GaussianFamily.univariate(priors=[[0.25, 0.25], [0.25, 0.25]],
        ...     means=[[0.0, 0.0], [2.0, -2.0]], stds=[[1.0, 1.0], [1.5, 1.5]])
        >>> res = ideal_residuals(fam, form="affine")
        >>> round(float(res.priors), 6), round(float(res["features"]), 6)
        (0.0, 0.0)
        >>> round(float(ideal_residuals(fam, form="symmetric").features), 6)
        2.0
    """
    check_family(family, "ideal_residuals")
    _check_form(form)
    c = _check_reference_class(reference_class, family.k)
    return _residuals_impl(family.priors, family.means, family.covs, form, c)


@partial(jax.jit, static_argnames=("form", "c"))
def _residuals_impl(priors, means, covs, form, c):
    family = GaussianFamily(priors, means, covs, validate=False)
    k, d = family.k, family.d
    nb = len(family.batch_shape)

    base = base_rates(family.priors)  # [..., k, m]
    prior_res = jnp.max(jnp.max(base, axis=-1) - jnp.min(base, axis=-1), axis=-1)

    delta, g = _whiten(family, c)  # [..., k, m, d], [..., k, m, d, d]
    if form == "symmetric":
        feat = jnp.maximum(
            _group_spread(jnp.moveaxis(delta, -2, nb), nb),
            _group_spread(jnp.moveaxis(g, -3, nb), nb),
        )
        return IdealResiduals(prior_res, feat)

    if k == 1:
        return IdealResiduals(prior_res, jnp.zeros(family.batch_shape, family.dtype))
    others = np.array([i for i in range(k) if i != c])
    dj = jnp.moveaxis(delta[..., others, :, :], -2, nb)  # [..., m, J, d]
    gj = jnp.moveaxis(g[..., others, :, :, :], -3, nb)  # [..., m, J, d, d]

    if d == 1:
        ratio = jnp.sqrt(gj[..., 0, 0])  # σ_ia / σ_ca, [..., m, J]
        v = dj[..., 0]  # [..., m, J]
        v0 = jax.lax.slice_in_dim(v, 0, 1, axis=nb)
        scale = jnp.maximum(1.0, jnp.maximum(jnp.abs(v), jnp.abs(v0)))
        mis_plus = jnp.max(jnp.abs(v - v0) / scale, axis=-1)  # [..., m]
        mis_minus = jnp.max(jnp.abs(v + v0) / scale, axis=-1)
        sign_res = jnp.max(jnp.minimum(mis_plus, mis_minus), axis=-1)
        feat = jnp.maximum(_group_spread(ratio, nb), sign_res)
        return IdealResiduals(prior_res, feat)

    feat = _group_spread(jnp.linalg.eigvalsh(gj), nb)
    tau = jnp.trace(gj, axis1=-2, axis2=-1) / d  # [..., m, J]
    gn = gj / tau[..., None, None]
    feat = jnp.maximum(feat, _group_spread(jnp.einsum("...ip,...lp->...il", dj, dj), nb))
    n_other = dj.shape[-2]
    y = jnp.broadcast_to(dj[..., None, :, :], dj.shape[:-2] + (n_other,) + dj.shape[-2:])
    for _ in range(1, d):  # y[..., j, l, :] = (G_j/τ_j)^r δ_l
        y = jnp.einsum("...jpq,...jlq->...jlp", gn, y)
        feat = jnp.maximum(feat, _group_spread(jnp.einsum("...ip,...jlp->...ijl", dj, y), nb))
    feat = jnp.maximum(feat, _group_spread(jnp.einsum("...ipq,...jqp->...ij", gj, gj), nb))
    feat = jnp.maximum(
        feat, _group_spread(jnp.einsum("...ipq,...jqr,...lrp->...ijl", gj, gj, gj), nb)
    )
    return IdealResiduals(prior_res, feat)


def is_ideal(
    family: GaussianFamily, *, form: str = "symmetric", atol: float = 1e-6, reference_class: int = 0
) -> jax.Array:
    """Whether every residual of :func:`ideal_residuals` is at most ``atol``.

    ``atol = 1e-6`` suits float64; in float32 the whitening alone leaves residuals of order
    ``1e-6``–``1e-5``, so use ``atol ≈ 1e-4`` there. For ``form="affine"`` with ``k ≥ 3`` and
    ``d ≥ 3`` a ``True`` answer rests on a necessary condition (see :func:`ideal_residuals`).

    Args:
        family: a :class:`GaussianFamily`, any batch axes (log-normal: the parameters of ``log X``).
        form: ``"symmetric"`` or ``"affine"``.
        atol: tolerance on every residual.
        reference_class: the whitening class ``c``.

    Returns:
        Boolean array of shape ``family.batch_shape``.

    Raises:
        ValueError: for an unknown ``form`` (the message names ``form`` and the allowed values).

    Example:
        >>> from jaxsteer import GaussianFamily
        >>> from jaxsteer.ideal import is_ideal
        >>> fam = GaussianFamily.univariate(priors=[[0.25, 0.25], [0.25, 0.25]],
        ...     means=[[0.0, 0.0], [2.0, -2.0]], stds=[[1.0, 1.0], [1.5, 1.5]])
        >>> bool(is_ideal(fam, form="affine", atol=1e-4)), bool(is_ideal(fam, form="symmetric", atol=1e-4))
        (True, False)
    """
    _check_form(form)
    res = ideal_residuals(family, form=form, reference_class=reference_class)
    out = jnp.ones(family.batch_shape, dtype=bool)
    for v in res:
        out = out & (v <= atol)
    return out

