"""Ideal distributions and exact fairness analytics of cost-sensitive Bayes rules (MATH §2, §5).

A family ``θ`` is *ideal* when the group-aware Bayes rule
``h_C(x, a) = argmin_j Σ_i C[i, j] q(i|a) f_ia(x)`` is exactly fair (equalized odds and demographic
parity) for every cost matrix ``C``. This module provides

* :func:`ideal_residuals` / :func:`is_ideal` — how far a family is from the *symmetric* condition
  (the paper's Proposition 3.2) or from the *affine-template* condition (MATH §2);
* :func:`bayes_rates_1d` — exact confusion rates, Bayes risk and fairness gaps of ``h_C`` for
  univariate families (any number of classes);
* :func:`bayes_rates_linear` — the same, exact in any dimension, for binary families with equal
  class covariances within each group (linear rules);
* :func:`bayes_rates_mc` — the same quantities for any dimension by Monte Carlo, with standard errors;
* :func:`bayes_predict` — the Bayes rule applied to data;
* :func:`js_divergence_1d` — the Jensen–Shannon divergence of two univariate families by quadrature.

Log-normal families (``family.lognormal``) are handled as the Gaussian family of ``log X``: the map
``log`` is a bijection, so Bayes rules, their confusion rates, the ideal conditions and divergences
are all unchanged by it.

Conventions: ``C[i, j]`` is the cost of predicting ``j`` when the truth is ``i``; confusion rates are
``confusion[..., a, i, j] = P(h = j | Y = i, A = a)``.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

from jaxsteer import _linalg
from jaxsteer.family import GaussianFamily

__all__ = [
    "FORMS",
    "ideal_residuals",
    "is_ideal",
    "bayes_rates_1d",
    "bayes_rates_mc",
    "js_divergence_1d",
    "bayes_predict",
    "bayes_rates_linear",
]

#: Forms of the ideal condition understood by :func:`ideal_residuals` and :func:`is_ideal`.
FORMS = ("symmetric", "affine")

#: Half-width, in standard deviations, of the region covered by the fixed grids of this module.
_TAIL_Z = 12.0


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


def _check_family(family, fname: str) -> None:
    if not isinstance(family, GaussianFamily):
        raise TypeError(f"{fname}: expected a GaussianFamily; got {type(family).__name__}.")


def _check_univariate(family, fname: str) -> None:
    if family.d != 1:
        raise ValueError(
            f"{fname}: needs a univariate family (d == 1); got d={family.d}. "
            "Use bayes_rates_mc for multivariate families."
        )


def _check_cost(cost, k: int, dtype, fname: str) -> jax.Array:
    cost = jnp.asarray(cost)
    if cost.shape != (k, k):
        raise ValueError(
            f"{fname}: cost must have shape (k, k) = ({k}, {k}) with cost[i, j] the cost of "
            f"predicting j when the truth is i; got shape {cost.shape}."
        )
    if not isinstance(cost, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(cost))):
        raise ValueError(f"{fname}: cost must be finite.")
    return cost.astype(dtype)


def _safe_base_rates(priors: jax.Array) -> jax.Array:
    """``q(i|a)``; a group with zero mass gets uniform base rates instead of ``0/0``."""
    p = jnp.sum(priors, axis=-2, keepdims=True)
    k = priors.shape[-2]
    return jnp.where(p > 0, priors / jnp.where(p > 0, p, 1.0), 1.0 / k)


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
) -> dict:
    """Non-negative residuals of the ideal conditions of MATH §2 (zero when the condition holds).

    Let ``c = reference_class`` and ``W_a = Σ_ca^{-1/2}`` (symmetric inverse square root). Every
    group is whitened by its reference-class covariance: ``δ_ia = W_a(μ_ia − μ_ca)`` and
    ``G_ia = W_a Σ_ia W_a``. These are dimensionless, so differences are reported *relative with a
    floor of one*: for each compared quantity ``x_a``,
    ``(max_a x_a − min_a x_a) / max(1, max_a |x_a|)``, maximised over all entries.

    Returned keys (each an array of shape ``family.batch_shape``):

    * ``"priors"`` — ``max_{i,a,a'} |q(i|a) − q(i|a')|`` (absolute; probabilities).
    * ``"features"`` — depends on ``form``:

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
        ``{"priors": [...], "features": [...]}``.

    Raises:
        ValueError: for an unknown ``form`` or a ``reference_class`` outside ``[0, k)``.

    Example:
        >>> res = ideal_residuals(fam, form="affine")
        >>> float(res["priors"]), float(res["features"])
    """
    _check_family(family, "ideal_residuals")
    _check_form(form)
    c = _check_reference_class(reference_class, family.k)
    return _residuals_impl(family.priors, family.means, family.covs, form, c)


@partial(jax.jit, static_argnames=("form", "c"))
def _residuals_impl(priors, means, covs, form, c):
    family = GaussianFamily(priors, means, covs, validate=False)
    k, d = family.k, family.d
    nb = len(family.batch_shape)

    base = _safe_base_rates(family.priors)  # [..., k, m]
    prior_res = jnp.max(jnp.max(base, axis=-1) - jnp.min(base, axis=-1), axis=-1)

    delta, g = _whiten(family, c)  # [..., k, m, d], [..., k, m, d, d]
    if form == "symmetric":
        feat = jnp.maximum(
            _group_spread(jnp.moveaxis(delta, -2, nb), nb),
            _group_spread(jnp.moveaxis(g, -3, nb), nb),
        )
        return {"priors": prior_res, "features": feat}

    if k == 1:
        return {"priors": prior_res, "features": jnp.zeros(family.batch_shape, family.dtype)}
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
        return {"priors": prior_res, "features": feat}

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
    return {"priors": prior_res, "features": feat}


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
        >>> bool(is_ideal(fam, form="affine"))
    """
    _check_form(form)
    res = ideal_residuals(family, form=form, reference_class=reference_class)
    out = jnp.ones(family.batch_shape, dtype=bool)
    for v in res.values():
        out = out & (v <= atol)
    return out


# ---------------------------------------------------------------------------------------------
# summaries shared by the exact and the Monte Carlo rates
# ---------------------------------------------------------------------------------------------


def _summaries(conf, base, priors, cost) -> dict:
    """Rates and gaps from ``conf [..., m, k, k]``, ``base``/``priors [..., k, m]``, ``cost [k, k]``."""
    k = conf.shape[-1]
    pos = jnp.einsum("...ia,...aij->...aj", base, conf)
    err = jnp.einsum("...ia,ij,...aij->...", priors, cost, conf)
    conf_gap = jnp.max(conf, axis=-3) - jnp.min(conf, axis=-3)
    pos_gap = jnp.max(pos, axis=-2) - jnp.min(pos, axis=-2)
    out = {
        "confusion": conf,
        "positive_rate": pos,
        "error": err,
        "confusion_gap": conf_gap,
        "positive_rate_gap": pos_gap,
        "dp_gap": jnp.max(pos_gap, axis=-1),
    }
    if k == 2:
        out["tpr_gap"] = conf_gap[..., 1, 1]
        out["fpr_gap"] = conf_gap[..., 0, 1]
        out["dp_gap"] = pos_gap[..., 1]
        out["eo_gap"] = jnp.maximum(out["tpr_gap"], out["fpr_gap"])
    else:
        out["eo_gap"] = jnp.max(conf_gap, axis=(-2, -1))
    return out


def _gap_se(x, se, axis):
    """Standard error of ``max − min`` along ``axis`` from the arg-max and arg-min entries."""
    imax = jnp.expand_dims(jnp.argmax(x, axis=axis), axis)
    imin = jnp.expand_dims(jnp.argmin(x, axis=axis), axis)
    s1 = jnp.take_along_axis(se, imax, axis=axis)
    s2 = jnp.take_along_axis(se, imin, axis=axis)
    return jnp.squeeze(jnp.sqrt(s1**2 + s2**2), axis=axis)


# ---------------------------------------------------------------------------------------------
# exact univariate rates
# ---------------------------------------------------------------------------------------------


def _rel_densities(x, logpi, mu, sd):
    """``q(i|a) f_i(x) / max_l q(l|a) f_l(x)`` for points ``x [...]`` of one group → ``[..., k]``.

    Dividing by the largest term changes no comparison of expected costs and avoids underflow far
    in the tails.
    """
    z = (x[..., None] - mu) / sd
    lp = logpi - jnp.log(sd) - 0.5 * z**2  # the common −½ln2π is irrelevant
    top = jnp.max(lp, axis=-1, keepdims=True)
    return jnp.exp(lp - jnp.where(jnp.isfinite(top), top, 0.0))


def _labels_1d(x, logpi, mu, sd, cost):
    """Bayes decisions at points ``x [P]`` for one group (``logpi, mu, sd [k]``) → ``[P]`` int."""
    return jnp.argmin(_rel_densities(x, logpi, mu, sd) @ cost, axis=-1)


def _pairwise_roots(pi, mu, sd, cost):
    """Roots of ``w_j f_j = w_l f_l`` for all pairs ``j < l``, ``w_j = |C[j,l] − C[j,j]| π_j``.

    These are exactly the boundaries between ``j`` and ``l`` when ``C[i, j] = C[i, l]`` for every
    other class ``i`` (always for ``k = 2``; for any ``k`` when misclassification costs depend only
    on the true class). Non-real roots are replaced by ``μ_l`` (a harmless extra breakpoint).
    """
    k = pi.shape[0]
    tiny = jnp.finfo(mu.dtype).tiny
    roots = []
    for j in range(k):
        for l in range(j + 1, k):
            wj = jnp.abs(cost[j, l] - cost[j, j]) * pi[j]
            wl = jnp.abs(cost[l, j] - cost[l, l]) * pi[l]
            # In u = (x − μ_l)/σ_l: ln(w_j f_j) − ln(w_l f_l) = A u² + B u + C0.
            rho = sd[l] / sd[j]
            dl = (mu[j] - mu[l]) / sd[j]
            a2 = 0.5 * (1.0 - rho**2)
            b1 = rho * dl
            log_ratio = jnp.log(jnp.maximum(wj, tiny)) - jnp.log(jnp.maximum(wl, tiny))
            c0 = log_ratio + jnp.log(rho) - 0.5 * dl**2
            disc = b1**2 - 4.0 * a2 * c0
            sq = jnp.sqrt(jnp.maximum(disc, 0.0))
            qq = -0.5 * (b1 + jnp.where(b1 >= 0, sq, -sq))
            u1 = qq / a2  # ±inf or nan when a2 = 0 or qq = 0: dropped below
            u2 = c0 / qq
            for u in (u1, u2):
                ok = jnp.isfinite(u) & (disc >= 0)
                roots.append(mu[l] + sd[l] * jnp.where(ok, u, 0.0))
    return jnp.stack(roots)


def _cell_masses(edges, mu, sd):
    """``P(lo < X < hi)`` for consecutive ``edges [P]`` (with ±∞ appended) and ``X ~ N(μ_i, σ_i)``.

    Returns ``[k, P + 1]``; tails use the survival function so small upper-tail masses keep their
    relative precision.
    """
    inf = jnp.array([jnp.inf], edges.dtype)
    lo = jnp.concatenate([-inf, edges])
    hi = jnp.concatenate([edges, inf])
    zlo = (lo[None, :] - mu[:, None]) / sd[:, None]
    zhi = (hi[None, :] - mu[:, None]) / sd[:, None]
    upper = zlo > 0
    return jnp.where(upper, ndtr(-zlo) - ndtr(-zhi), ndtr(zhi) - ndtr(zlo))


def _conf_1d_group(pi, mu, sd, cost, grid_size: int, n_bisect: int):
    """Exact confusion ``[k, k]`` (``[i, j]``) of the Bayes rule in one group of a univariate family."""
    k = pi.shape[0]
    logpi = jnp.where(pi > 0, jnp.log(jnp.where(pi > 0, pi, 1.0)), -jnp.inf)
    label = partial(_labels_1d, logpi=logpi, mu=mu, sd=sd, cost=cost)
    pts = _pairwise_roots(pi, mu, sd, cost)
    if k > 2:
        # Every boundary is a zero of some D_jl(x) = R_j(x) − R_l(x) (expected costs of predicting
        # j and l). Locate the sign changes of every D_jl on a grid and refine them by bisection.
        zg = jnp.linspace(-_TAIL_Z, _TAIL_Z, grid_size, dtype=mu.dtype)
        grid = (mu[:, None] + sd[:, None] * zg[None, :]).reshape(-1)
        t = jnp.sort(jnp.concatenate([pts, grid]))
        pairs = [(j, l) for j in range(k) for l in range(j + 1, k)]
        cdiff = jnp.stack([cost[:, j] - cost[:, l] for j, l in pairs], axis=1)  # [k, npairs]

        def dsign(x):  # x [P, npairs] → sign of D_jl(x) for each column's own pair
            rel = _rel_densities(x, logpi, mu, sd)  # [P, npairs, k]
            return jnp.einsum("pqi,iq->pq", rel, cdiff) > 0

        lo = jnp.broadcast_to(t[:-1, None], (t.shape[0] - 1, len(pairs)))
        hi = jnp.broadcast_to(t[1:, None], lo.shape)
        s_lo = dsign(lo)

        def body(_, carry):
            a, b = carry
            mid = 0.5 * (a + b)
            same = dsign(mid) == s_lo
            return jnp.where(same, mid, a), jnp.where(same, b, mid)

        _, b = jax.lax.fori_loop(0, n_bisect, body, (lo, hi))
        # b = the right end of the cell where D_jl has no sign change there: a harmless duplicate.
        edges = jnp.sort(jnp.concatenate([t, b.reshape(-1)]))
    else:
        edges = jnp.sort(pts)
    mids = 0.5 * (edges[:-1] + edges[1:])
    first = edges[0] - 1.0 - jnp.abs(edges[0])
    last = edges[-1] + 1.0 + jnp.abs(edges[-1])
    test = jnp.concatenate([first[None], mids, last[None]])
    lab = label(test)  # [P + 1]
    mass = _cell_masses(edges, mu, sd)  # [k, P + 1]
    return mass @ jax.nn.one_hot(lab, k, dtype=mass.dtype)


def bayes_rates_1d(family: GaussianFamily, cost, *, grid_size: int = 256) -> dict:
    """Exact confusion rates, Bayes risk and fairness gaps of the Bayes rule of a univariate family.

    The group-aware rule is ``h(x, a) = argmin_j Σ_i C[i, j] q(i|a) f_ia(x)`` (ties go to the
    smallest ``j``). Within each group its decision regions are unions of intervals; the probability
    of each interval under every ``N(μ_ia, σ_ia²)`` is a difference of normal CDFs (no sampling).

    * ``k == 2``: the boundary is where ``w_1 f_1 = w_0 f_0`` with ``w_1 = (C[1,0] − C[1,1]) q(1|a)``
      and ``w_0 = (C[0,1] − C[0,0]) q(0|a)``; the log-ratio is a quadratic in ``x``, whose roots are
      computed in closed form (numerically stable formula in standardised coordinates). Labels of
      the resulting intervals are evaluated directly, so every sign pattern of ``w_0, w_1``
      (including "always predict 1") is handled. Exact to rounding (≈1e-15 in float64).
    * ``k > 2``: every boundary is a zero of some ``D_jl(x) = R_j(x) − R_l(x)``, the difference of
      the expected costs of predicting ``j`` and ``l`` (a signed sum of ``k`` Gaussian densities).
      Breakpoints are (i) the closed-form roots of ``|w_j| f_j = |w_l| f_l`` for all pairs, with
      ``w_j = (C[j,l] − C[j,j]) q(j|a)``, and (ii) every sign change of every ``D_jl`` on a grid of
      ``grid_size`` points over ``μ_i ± 12σ_i`` for each class, refined by 64 bisection steps (to
      rounding). Labels are then evaluated between consecutive breakpoints. This is exact to
      rounding whenever misclassification costs depend only on the true class
      (``C[i, j] = C[i, l]`` for ``i ∉ {j, l}``, e.g. 0/1 loss and class-weighted 0/1 loss), since
      then every ``D_jl`` is ``w_l f_l − w_j f_j`` and its zeros are the roots (i). For general
      costs it is exact to rounding unless some ``D_jl`` has two zeros inside one grid cell (width
      ``24σ_i/(grid_size − 1)`` near class ``i``); such a pair is missed together with the sliver
      between them, costing at most that sliver's probability. Zeros beyond ``±12σ`` of every
      class carry mass below ``1e-32``.

    For a log-normal family the rates are those of the Gaussian family on ``log X`` (the rule and
    its rates are invariant under the bijection ``log``).

    Args:
        family: univariate (``d == 1``) family, any leading batch axes.
        cost: ``[k, k]`` cost matrix, ``cost[i, j]`` = cost of predicting ``j`` when the truth is ``i``.
        grid_size: grid points per class for ``k > 2`` (static; ignored for ``k == 2``).

    Returns:
        dict with (batch axes first)

        * ``"confusion"`` ``[..., m, k, k]``: ``P(h = j | Y = i, A = a)`` at ``[a, i, j]``;
        * ``"positive_rate"`` ``[..., m, k]``: ``P(h = j | A = a)``;
        * ``"error"`` ``[...]``: the Bayes risk ``Σ_{i,a} q[i,a] Σ_j C[i,j] P(h=j | i, a)``;
        * ``"confusion_gap"`` ``[..., k, k]`` and ``"positive_rate_gap"`` ``[..., k]``: max − min over
          groups;
        * ``"eo_gap"``: largest confusion gap (for ``k = 2``: ``max(tpr_gap, fpr_gap)``);
          ``"dp_gap"``: largest positive-rate gap (for ``k = 2``: that of class 1);
        * for ``k == 2`` also ``"tpr_gap"`` (``P(h=1|Y=1,A=a)``) and ``"fpr_gap"`` (``P(h=1|Y=0,A=a)``).

    Raises:
        ValueError: if ``d != 1`` or ``cost`` is not ``[k, k]``.

    Example:
        >>> fam = GaussianFamily.univariate(priors=[[0.3, 0.2], [0.2, 0.3]],
        ...     means=[[0., 1.], [2., 2.5]], stds=[[1., 1.], [1., 2.]])
        >>> rates = bayes_rates_1d(fam, jnp.array([[0., 1.], [1., 0.]]))
        >>> rates["tpr_gap"], rates["error"]
    """
    _check_family(family, "bayes_rates_1d")
    _check_univariate(family, "bayes_rates_1d")
    k = family.k
    if k > 2 and grid_size < 2:
        raise ValueError(f"grid_size: must be at least 2; got {grid_size}.")
    cost = _check_cost(cost, k, family.dtype, "bayes_rates_1d")
    return _rates_1d_impl(family.priors, family.means, family.covs, cost, int(grid_size))


@partial(jax.jit, static_argnames=("grid_size",))
def _rates_1d_impl(priors, means, covs, cost, grid_size):
    k, m = priors.shape[-2:]
    bshape = priors.shape[:-2]
    base = _safe_base_rates(priors)
    mu = means[..., 0].reshape((-1, k, m))
    sd = jnp.sqrt(covs[..., 0, 0]).reshape((-1, k, m))
    group = partial(_conf_1d_group, cost=cost, grid_size=grid_size, n_bisect=64)
    per_group = jax.vmap(group, in_axes=(1, 1, 1))  # over a → [m, k, k]
    conf = jax.vmap(per_group)(base.reshape((-1, k, m)), mu, sd)  # [B, m, k, k]
    conf = conf.reshape(bshape + (m, k, k))
    return _summaries(conf, base, priors, cost)


# ---------------------------------------------------------------------------------------------
# Monte Carlo rates
# ---------------------------------------------------------------------------------------------


def _mc_single(priors, means, covs, cost, key, n: int):
    k, m = priors.shape
    d = means.shape[-1]
    dtype = means.dtype
    base = _safe_base_rates(priors)
    logpi = jnp.where(base > 0, jnp.log(jnp.where(base > 0, base, 1.0)), -jnp.inf)  # [k, m]
    chol = jnp.linalg.cholesky(_linalg.sym(covs))  # [k, m, d, d]
    eye = jnp.broadcast_to(jnp.eye(d, dtype=dtype), chol.shape)
    linv = jax.scipy.linalg.solve_triangular(chol, eye, lower=True)
    half_logdet = 0.5 * _linalg.chol_logdet(chol)  # [k, m]
    eps = jax.random.normal(key, (k, m, n, d), dtype=dtype)  # independent draws for every subgroup
    counts = []
    for i in range(k):
        x = means[i][:, None, :] + jnp.einsum("apq,anq->anp", chol[i], eps[i])  # [m, n, d]
        diff = x[None] - means[:, :, None, :]  # [l, m, n, d]
        z = jnp.einsum("lapq,lanq->lanp", linv, diff)
        lp = -0.5 * jnp.sum(z**2, axis=-1) - half_logdet[:, :, None] + logpi[:, :, None]  # [l, m, n]
        top = jnp.max(lp, axis=0, keepdims=True)
        rel = jnp.exp(lp - top)
        risk = jnp.einsum("lan,lj->anj", rel, cost)
        h = jnp.argmin(risk, axis=-1)  # [m, n]
        counts.append(jnp.mean(jax.nn.one_hot(h, k, dtype=dtype), axis=1))  # [m, k]
    return jnp.stack(counts, axis=1)  # [m, i, j]


def bayes_rates_mc(family: GaussianFamily, cost, key, n: int = 200_000) -> dict:
    """Monte Carlo confusion rates, Bayes risk and fairness gaps of the Bayes rule, any ``d``.

    Draws ``n`` points from every subgroup ``N(μ_ia, Σ_ia)`` (independent streams split from
    ``key``), applies the exact group-aware rule ``argmin_j Σ_i C[i, j] q(i|a) f_ia(x)`` and counts.
    Every batch member uses the same ``key`` (so a batched call equals a loop over members).
    For a log-normal family the Gaussian of ``log X`` is sampled: the rule and its rates are
    invariant under ``log``.

    Standard errors: binomial ``sqrt(p(1 − p)/n)`` for each confusion rate;
    ``sqrt(Σ_i q(i|a)² se²)`` for positive rates; ``sqrt(Σ_{ia} q[i,a]² Var(cost | i, a)/n)`` for
    the risk; for a gap ``max_a − min_a`` the combination ``sqrt(se_max² + se_min²)`` of the two
    entries attaining it (``eo_gap``/``dp_gap``: of the largest gap entry). Note that a max − min
    over several groups is biased upward by sampling noise (about one standard error for three
    groups).

    Args:
        family: any ``d``, any leading batch axes.
        cost: ``[k, k]`` cost matrix (``cost[i, j]``: truth ``i``, prediction ``j``).
        key: a ``jax.random`` key.
        n: samples per subgroup (static).

    Returns:
        The keys of :func:`bayes_rates_1d` plus ``"confusion_se"``, ``"positive_rate_se"``,
        ``"error_se"``, ``"confusion_gap_se"``, ``"positive_rate_gap_se"``, ``"eo_gap_se"``,
        ``"dp_gap_se"`` and, for ``k == 2``, ``"tpr_gap_se"`` and ``"fpr_gap_se"``.

    Raises:
        ValueError: if ``cost`` is not ``[k, k]`` or ``n < 1``.

    Example:
        >>> mc = bayes_rates_mc(fam, jnp.array([[0., 1.], [1., 0.]]), jax.random.PRNGKey(0))
        >>> mc["eo_gap"], mc["eo_gap_se"]
    """
    _check_family(family, "bayes_rates_mc")
    k = family.k
    if int(n) < 1:
        raise ValueError(f"n: must be a positive number of samples per subgroup; got {n}.")
    n = int(n)
    cost = _check_cost(cost, k, family.dtype, "bayes_rates_mc")
    return _mc_impl(family.priors, family.means, family.covs, cost, key, n)


@partial(jax.jit, static_argnames=("n",))
def _mc_impl(priors, means, covs, cost, key, n):
    k, m = priors.shape[-2:]
    d = means.shape[-1]
    bshape = priors.shape[:-2]
    conf = jax.lax.map(
        lambda args: _mc_single(*args, cost, key, n),
        (priors.reshape((-1, k, m)), means.reshape((-1, k, m, d)), covs.reshape((-1, k, m, d, d))),
    ).reshape(bshape + (m, k, k))
    base = _safe_base_rates(priors)
    out = _summaries(conf, base, priors, cost)

    se = jnp.sqrt(conf * (1.0 - conf) / n)
    pos_se = jnp.sqrt(jnp.einsum("...ia,...aij->...aj", base**2, se**2))
    mean_c = jnp.einsum("ij,...aij->...ai", cost, conf)
    mean_c2 = jnp.einsum("ij,...aij->...ai", cost**2, conf)
    var_c = jnp.maximum(mean_c2 - mean_c**2, 0.0)  # [..., m, k]
    err_se = jnp.sqrt(jnp.einsum("...ia,...ai->...", priors**2, var_c) / n)
    conf_gap_se = _gap_se(conf, se, axis=-3)  # [..., k, k]
    pos_gap_se = _gap_se(out["positive_rate"], pos_se, axis=-2)  # [..., k]
    out.update(
        confusion_se=se,
        positive_rate_se=pos_se,
        error_se=err_se,
        confusion_gap_se=conf_gap_se,
        positive_rate_gap_se=pos_gap_se,
    )
    if k == 2:
        out["tpr_gap_se"] = conf_gap_se[..., 1, 1]
        out["fpr_gap_se"] = conf_gap_se[..., 0, 1]
        out["dp_gap_se"] = pos_gap_se[..., 1]
        out["eo_gap_se"] = jnp.where(
            out["tpr_gap"] >= out["fpr_gap"], out["tpr_gap_se"], out["fpr_gap_se"]
        )
    else:
        flat_gap = out["confusion_gap"].reshape(bshape + (k * k,))
        flat_se = conf_gap_se.reshape(bshape + (k * k,))
        idx = jnp.argmax(flat_gap, axis=-1)[..., None]
        out["eo_gap_se"] = jnp.take_along_axis(flat_se, idx, axis=-1)[..., 0]
        jdx = jnp.argmax(out["positive_rate_gap"], axis=-1)[..., None]
        out["dp_gap_se"] = jnp.take_along_axis(pos_gap_se, jdx, axis=-1)[..., 0]
    return out


# ---------------------------------------------------------------------------------------------
# Jensen–Shannon divergence of univariate families
# ---------------------------------------------------------------------------------------------


def js_divergence_1d(
    p: GaussianFamily, q: GaussianFamily, *, panels: int = 48, order: int = 16
) -> jax.Array:
    """Jensen–Shannon divergence of two univariate families by Gauss–Legendre quadrature, in nats.

    ``JS(p, q) = ½ KL(P ‖ M) + ½ KL(Q ‖ M)`` with ``M = (P + Q)/2`` for the joint laws of
    ``(Y, A, X)`` — the same quantity that :func:`jaxsteer.divergence.js_divergence` estimates by
    Monte Carlo. It is a sum over cells ``(i, a)`` of the 1-D integrals
    ``∫ ½ p_ia f ln(2 p_ia f / (p_ia f + q_ia g)) + ½ q_ia g ln(2 q_ia g / (p_ia f + q_ia g)) dx``.

    Each integral uses composite Gauss–Legendre quadrature (``order`` nodes per panel) on the panels
    cut by the union of two uniform grids of ``panels + 1`` points over ``μ ± 12σ`` of each of the
    two components, so a narrow component is resolved as finely as a wide one. The mass ignored
    outside both ranges is below ``2Φ(−12) ≈ 4e-33``; with the defaults the quadrature error is at
    rounding level (agreement with adaptive ``scipy.integrate.quad`` to about ``1e-15`` absolute in
    float64, including components whose standard deviations differ by a factor of 1000).
    Values lie in ``[0, ln 2]``. For log-normal families the value is that of ``log X`` (JS is
    invariant under bijections).

    Args:
        p, q: univariate (``d == 1``) families with the same ``(k, m)``; batch axes broadcast.
        panels: panels per component grid (static).
        order: Gauss–Legendre nodes per panel (static).

    Returns:
        ``[...]`` (broadcast batch shape).

    Raises:
        ValueError: if a family is not univariate, ``(k, m)`` differ, or one family is log-normal
            and the other not.

    Example:
        >>> js_divergence_1d(fam, fam)  # 0.0
    """
    _check_family(p, "js_divergence_1d")
    _check_family(q, "js_divergence_1d")
    _check_univariate(p, "js_divergence_1d")
    _check_univariate(q, "js_divergence_1d")
    if (p.k, p.m) != (q.k, q.m):
        raise ValueError(
            f"js_divergence_1d: families must share (k, m); got {(p.k, p.m)} and {(q.k, q.m)}."
        )
    if p.lognormal != q.lognormal:
        raise ValueError("js_divergence_1d: cannot compare a log-normal family with a Gaussian one.")
    if panels < 1 or order < 1:
        raise ValueError(f"panels, order: must be positive; got {panels}, {order}.")
    dtype = jnp.result_type(p.dtype, q.dtype)
    bshape = jnp.broadcast_shapes(p.batch_shape, q.batch_shape)
    shape = bshape + (p.k, p.m)

    def flat(x):
        return jnp.broadcast_to(x.astype(dtype), shape).reshape(-1)

    wp, mp, sp = flat(p.priors), flat(p.means[..., 0]), flat(jnp.sqrt(p.covs[..., 0, 0]))
    wq, mq, sq = flat(q.priors), flat(q.means[..., 0]), flat(jnp.sqrt(q.covs[..., 0, 0]))
    vals = _js_cells(wp, mp, sp, wq, mq, sq, int(panels), int(order)).reshape(shape)
    return jnp.sum(vals, axis=(-2, -1))


@partial(jax.jit, static_argnames=("panels", "order"))
def _js_cells(wp, mp, sp, wq, mq, sq, panels, order):
    """Per-cell JS integrals for flat parameter vectors of the two families."""
    dtype = wp.dtype
    nodes, weights = np.polynomial.legendre.leggauss(order)
    nodes = jnp.asarray(nodes, dtype)
    weights = jnp.asarray(weights, dtype)
    zg = jnp.linspace(-_TAIL_Z, _TAIL_Z, panels + 1, dtype=dtype)
    log2 = math.log(2.0)
    half_log2pi = 0.5 * math.log(2.0 * math.pi)

    def logw(w):
        return jnp.where(w > 0, jnp.log(jnp.where(w > 0, w, 1.0)), -jnp.inf)

    def term(la, lm):
        return jnp.where(jnp.isfinite(la), jnp.exp(la) * (log2 + la - lm), 0.0)

    def cell(w1, m1, s1, w2, m2, s2):
        t = jnp.sort(jnp.concatenate([m1 + s1 * zg, m2 + s2 * zg]))
        a, b = t[:-1], t[1:]
        x = 0.5 * (a + b)[:, None] + 0.5 * (b - a)[:, None] * nodes[None, :]
        jac = 0.5 * (b - a)[:, None] * weights[None, :]
        l1 = logw(w1) - jnp.log(s1) - half_log2pi - 0.5 * ((x - m1) / s1) ** 2
        l2 = logw(w2) - jnp.log(s2) - half_log2pi - 0.5 * ((x - m2) / s2) ** 2
        lm = jnp.logaddexp(l1, l2)
        return 0.5 * jnp.sum(jac * (term(l1, lm) + term(l2, lm)))

    return jax.vmap(cell)(wp, mp, sp, wq, mq, sq)


# ---------------------------------------------------------------------------------------------
# the Bayes rule on data
# ---------------------------------------------------------------------------------------------


def bayes_predict(family: GaussianFamily, x, a, cost=None) -> jax.Array:
    """The group-aware cost-sensitive Bayes rule ``h_C(x, a) = argmin_j Σ_i C[i,j] q(i|a) f_ia(x)``.

    Args:
        family: an unbatched :class:`GaussianFamily` (log-normal families take ``x`` on the
            original, positive scale).
        x: ``[n, d]`` points; a: ``[n]`` integer group codes.
        cost: ``[k, k]`` cost matrix, ``C[i, j]`` = cost of predicting ``j`` for truth ``i``;
            default ``1 − I`` (the MAP rule, minimum error).

    Returns:
        ``[n]`` int32 predicted class codes.

    Example:
        >>> y_hat = bayes_predict(sol.target, X, a)       # exactly fair on the ideal family
    """
    _check_family(family, "bayes_predict")
    if family.batch_shape:
        raise ValueError("family: bayes_predict needs one unbatched family; index the batch first.")
    k, m = family.k, family.m
    x = jnp.asarray(x, family.dtype)
    if x.ndim != 2 or x.shape[1] != family.d:
        raise ValueError(f"x: expected points [n, {family.d}], got shape {x.shape}.")
    a = jnp.asarray(a)
    if a.shape != x.shape[:1] or not jnp.issubdtype(a.dtype, jnp.integer):
        raise ValueError(f"a: expected integer group codes of shape ({x.shape[0]},), got {a.dtype} {a.shape}.")
    if not isinstance(a, jax.core.Tracer) and a.size and (int(a.min()) < 0 or int(a.max()) >= m):
        raise ValueError(f"a: group codes must be in 0..{m - 1}.")
    C = (1.0 - jnp.eye(k, dtype=family.dtype)) if cost is None else _check_cost(cost, k, family.dtype, "bayes_predict")
    return _bayes_predict(family.priors, family.means, family.covs, family.lognormal, C, x, a)


@partial(jax.jit, static_argnums=(3,))
def _bayes_predict(priors, means, covs, lognormal, C, x, a):
    fam = GaussianFamily(priors, means, covs, lognormal=lognormal, validate=False)
    logf = fam.log_density(x)  # [n, k, m]
    base = _safe_base_rates(priors)
    logpi = jnp.where(base > 0, jnp.log(jnp.where(base > 0, base, 1.0)), -jnp.inf)
    lp = jnp.take_along_axis(logf + logpi, a[:, None, None], axis=2)[..., 0]  # [n, k]
    rel = jnp.exp(lp - jnp.max(lp, axis=-1, keepdims=True))
    return jnp.argmin(rel @ C, axis=-1).astype(jnp.int32)


# ---------------------------------------------------------------------------------------------
# exact rates of linear Bayes rules (binary, equal covariances within each group)
# ---------------------------------------------------------------------------------------------


def bayes_rates_linear(family: GaussianFamily, cost, *, rtol: float = 1e-8) -> dict:
    """Exact rates of the Bayes rule of a binary family with equal class covariances in every group.

    When ``Σ_0a = Σ_1a = Σ_a`` the group-aware rule ``h(x, a) = 1`` iff ``w_0 f_0a(x) < w_1 f_1a(x)``
    (``w_1 = (C[1,0] − C[1,1]) q(1|a)``, ``w_0 = (C[0,1] − C[0,0]) q(0|a)``) is linear: it
    thresholds the log-likelihood ratio ``s(x) = δᵀΣ_a⁻¹x − ½(μ_1ᵀΣ_a⁻¹μ_1 − μ_0ᵀΣ_a⁻¹μ_0)``,
    ``δ = μ_1 − μ_0``, which given ``Y = i`` is ``N(δᵀΣ_a⁻¹μ_i − …, δᵀΣ_a⁻¹δ)``. Every confusion
    rate is then a normal CDF (exact to rounding, any ``d``). Every sign pattern of ``w_0, w_1`` is
    handled (negative weights flip the inequality; mixed signs give a constant rule; ties predict 0).

    Args:
        family: ``k = 2`` family with ``covs[..., 0, a] == covs[..., 1, a]`` (checked to ``rtol``
            on concrete input), any ``d`` and batch axes. Log-normal families: on ``log X``.
        cost: ``[2, 2]`` cost matrix.

    Returns:
        The dict of :func:`bayes_rates_1d` (``confusion``, ``positive_rate``, ``error``, gaps,
        ``tpr_gap``, ``fpr_gap``, ``eo_gap``, ``dp_gap``).

    Raises:
        ValueError: if ``k != 2``, the class covariances differ within a group (use
            :func:`bayes_rates_mc`), or ``cost`` is not ``[2, 2]``.

    Example:
        >>> fam = GaussianFamily(priors, means, jnp.broadcast_to(S, (2, 2, d, d)))
        >>> bayes_rates_linear(fam, jnp.array([[0., 1.], [1., 0.]]))["eo_gap"]
    """
    _check_family(family, "bayes_rates_linear")
    if family.k != 2:
        raise ValueError(f"family: bayes_rates_linear needs k = 2 classes, got k = {family.k}; use bayes_rates_mc.")
    covs = family.covs
    if not isinstance(covs, jax.core.Tracer):
        c = np.asarray(covs)
        scale = np.max(np.abs(c), axis=(-2, -1), keepdims=True)
        if not np.allclose(c[..., 0, :, :, :], c[..., 1, :, :, :], rtol=0.0, atol=rtol * float(scale.max())):
            raise ValueError(
                "family: the class covariances differ within a group, so the Bayes rule is quadratic, "
                "not linear; use bayes_rates_mc (any family) or bayes_rates_1d (d = 1)."
            )
    cost = _check_cost(cost, 2, family.dtype, "bayes_rates_linear")
    return _rates_linear_impl(family.priors, family.means, family.covs, cost)


@jax.jit
def _rates_linear_impl(priors, means, covs, cost):
    base = _safe_base_rates(priors)  # [..., 2, m]
    S = _linalg.sym(0.5 * (covs[..., 0, :, :, :] + covs[..., 1, :, :, :]))  # [..., m, d, d]
    mu0, mu1 = means[..., 0, :, :], means[..., 1, :, :]  # [..., m, d]
    delta = mu1 - mu0
    u = _linalg.spd_solve(S, delta)  # Σ⁻¹δ
    v = jnp.sum(u * delta, axis=-1)  # δᵀΣ⁻¹δ
    c0 = -0.5 * (jnp.sum(u * (mu1 + mu0), axis=-1))  # −½(μ1ᵀΣ⁻¹μ1 − μ0ᵀΣ⁻¹μ0) = −½ uᵀ(μ1 + μ0)
    m_i = jnp.stack([jnp.sum(u * mu0, axis=-1), jnp.sum(u * mu1, axis=-1)], axis=-2) + c0[..., None, :]  # [..., 2, m]
    w1 = (cost[1, 0] - cost[1, 1]) * base[..., 1, :]
    w0 = (cost[0, 1] - cost[0, 0]) * base[..., 0, :]
    both_pos = (w1 > 0) & (w0 > 0)
    both_neg = (w1 < 0) & (w0 < 0)
    ratio = jnp.where(both_pos | both_neg, w0 / jnp.where(both_pos | both_neg, w1, 1.0), 1.0)
    t = jnp.log(ratio)[..., None, :]  # threshold on s, [..., 1, m]
    sd = jnp.sqrt(jnp.maximum(v, 0.0))[..., None, :]
    z = (m_i - t) / jnp.where(sd > 0, sd, 1.0)
    above = jnp.where(sd > 0, ndtr(z), (m_i > t).astype(priors.dtype))  # P(s > t | Y = i)
    below = 1.0 - above
    const = ((w0 <= 0) & (w1 >= 0) & ~((w0 == 0) & (w1 == 0))).astype(priors.dtype)[..., None, :]
    p1 = jnp.where(both_pos[..., None, :], above, jnp.where(both_neg[..., None, :], below, const))  # [..., 2, m]
    p1 = jnp.swapaxes(p1, -1, -2)  # [..., m, i]
    conf = jnp.stack([1.0 - p1, p1], axis=-1)  # [..., m, i, j]
    return _summaries(conf, base, priors, cost)
