"""Exact fairness analytics of the cost-sensitive Bayes rule of a family (MATH §5).

The group-aware cost-sensitive Bayes rule of a family ``θ`` is
``h_C(x, a) = argmin_j Σ_i C[i, j] q(i|a) f_ia(x)``. This module gives its confusion rates, Bayes
risk and fairness gaps, and applies it to data:

* :func:`bayes_rates_1d` — exact, for univariate families (any number of classes);
* :func:`bayes_rates_linear` — exact in any dimension, for binary families with equal class
  covariances within each group (linear rules);
* :func:`bayes_rates_mc` — any dimension, by Monte Carlo, with standard errors;
* :func:`bayes_predict` — the rule applied to points ``x`` with group codes ``a``.

Rates come back as :class:`BayesRates` (Monte Carlo: :class:`BayesRatesMC`), NamedTuples of arrays:
pytrees that pass through ``jit`` and ``vmap``. Fields are read as attributes (``r.eo_gap``) or, as
from the dicts of earlier versions, by name (``r["eo_gap"]``).

Log-normal families (``family.lognormal``) are handled as the Gaussian family of ``log X``: the map
``log`` is a bijection, so Bayes rules and their confusion rates are unchanged by it.

Conventions: ``C[i, j]`` is the cost of predicting ``j`` when the truth is ``i``; confusion rates are
``confusion[..., a, i, j] = P(h = j | Y = i, A = a)``.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

from jaxsteer import _linalg, _validate
from jaxsteer._analytics import TAIL_Z, base_rates, check_cost, check_family, check_univariate, field_or_index
from jaxsteer.family import GaussianFamily

__all__ = [
    "BayesRates",
    "BayesRatesMC",
    "bayes_rates_1d",
    "bayes_rates_linear",
    "bayes_rates_mc",
    "bayes_predict",
]


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------


class BayesRates(NamedTuple):
    """Confusion rates, Bayes risk and fairness gaps of a Bayes rule (batch axes first).

    A NamedTuple of arrays, so a pytree (it passes through ``jit`` and ``vmap``). Fields are read as
    attributes, ``r.eo_gap``, or by name, ``r["eo_gap"]`` (also by position, ``r[0]``, as any tuple).
    ``tpr_gap`` and ``fpr_gap`` are defined for ``k == 2`` only: for ``k > 2`` they are ``None`` and
    ``r["tpr_gap"]`` raises ``KeyError``. ``r._asdict()`` gives a dict of the fields.

    Attributes:
        confusion: ``[..., m, k, k]``, ``P(h = j | Y = i, A = a)`` at ``[a, i, j]``.
        positive_rate: ``[..., m, k]``, ``P(h = j | A = a)``.
        error: ``[...]``, the Bayes risk ``Σ_{i,a} q[i,a] Σ_j C[i,j] P(h=j | i, a)``.
        confusion_gap: ``[..., k, k]``, max − min over groups of ``confusion``.
        positive_rate_gap: ``[..., k]``, max − min over groups of ``positive_rate``.
        eo_gap: ``[...]``, the largest confusion gap (``k = 2``: ``max(tpr_gap, fpr_gap)``).
        dp_gap: ``[...]``, the largest positive-rate gap (``k = 2``: that of class 1).
        tpr_gap: ``[...]``, ``k == 2``: the gap of ``P(h=1 | Y=1, A=a)``; else ``None``.
        fpr_gap: ``[...]``, ``k == 2``: the gap of ``P(h=1 | Y=0, A=a)``; else ``None``.
    """

    confusion: jax.Array
    positive_rate: jax.Array
    error: jax.Array
    confusion_gap: jax.Array
    positive_rate_gap: jax.Array
    eo_gap: jax.Array
    dp_gap: jax.Array
    tpr_gap: Optional[jax.Array] = None
    fpr_gap: Optional[jax.Array] = None

    __getitem__ = field_or_index


class BayesRatesMC(NamedTuple):
    """Monte Carlo :class:`BayesRates` with the standard error of every estimate (``<name>_se``).

    The fields of :class:`BayesRates` come first, in its order (``tpr_gap``/``fpr_gap`` and their
    standard errors last, ``None`` for ``k > 2``); access by attribute, name or position as there.

    Attributes:
        confusion, positive_rate, error, confusion_gap, positive_rate_gap, eo_gap, dp_gap: as in
            :class:`BayesRates`.
        confusion_se, positive_rate_se, error_se, confusion_gap_se, positive_rate_gap_se, eo_gap_se,
            dp_gap_se: their standard errors, same shapes.
        tpr_gap, fpr_gap, tpr_gap_se, fpr_gap_se: ``k == 2`` only, else ``None``.
    """

    confusion: jax.Array
    positive_rate: jax.Array
    error: jax.Array
    confusion_gap: jax.Array
    positive_rate_gap: jax.Array
    eo_gap: jax.Array
    dp_gap: jax.Array
    confusion_se: jax.Array
    positive_rate_se: jax.Array
    error_se: jax.Array
    confusion_gap_se: jax.Array
    positive_rate_gap_se: jax.Array
    eo_gap_se: jax.Array
    dp_gap_se: jax.Array
    tpr_gap: Optional[jax.Array] = None
    fpr_gap: Optional[jax.Array] = None
    tpr_gap_se: Optional[jax.Array] = None
    fpr_gap_se: Optional[jax.Array] = None

    __getitem__ = field_or_index


def _summaries(conf, base, priors, cost) -> BayesRates:
    """Rates and gaps from ``conf [..., m, k, k]``, ``base``/``priors [..., k, m]``, ``cost [k, k]``."""
    k = conf.shape[-1]
    pos = jnp.einsum("...ia,...aij->...aj", base, conf)
    err = jnp.einsum("...ia,ij,...aij->...", priors, cost, conf)
    conf_gap = jnp.max(conf, axis=-3) - jnp.min(conf, axis=-3)
    pos_gap = jnp.max(pos, axis=-2) - jnp.min(pos, axis=-2)
    if k == 2:
        tpr_gap, fpr_gap = conf_gap[..., 1, 1], conf_gap[..., 0, 1]
        return BayesRates(conf, pos, err, conf_gap, pos_gap, eo_gap=jnp.maximum(tpr_gap, fpr_gap),
                          dp_gap=pos_gap[..., 1], tpr_gap=tpr_gap, fpr_gap=fpr_gap)
    return BayesRates(conf, pos, err, conf_gap, pos_gap, eo_gap=jnp.max(conf_gap, axis=(-2, -1)),
                      dp_gap=jnp.max(pos_gap, axis=-1))


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
        zg = jnp.linspace(-TAIL_Z, TAIL_Z, grid_size, dtype=mu.dtype)
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


def bayes_rates_1d(family: GaussianFamily, cost, *, grid_size: int = 256) -> BayesRates:
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
        :class:`BayesRates`: ``confusion``, ``positive_rate``, ``error`` (the Bayes risk),
        ``confusion_gap``, ``positive_rate_gap``, ``eo_gap``, ``dp_gap`` and, for ``k == 2``,
        ``tpr_gap`` and ``fpr_gap`` (batch axes first). Read ``r.eo_gap`` or ``r["eo_gap"]``.

    Raises:
        ValueError: if ``d != 1`` or ``cost`` is not ``[k, k]``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxsteer import GaussianFamily
        >>> from jaxsteer.bayes import bayes_rates_1d
        >>> fam = GaussianFamily.univariate(priors=[[0.3, 0.2], [0.2, 0.3]],
        ...     means=[[0., 1.], [2., 2.5]], stds=[[1., 1.], [1., 2.]])
        >>> rates = bayes_rates_1d(fam, jnp.array([[0., 1.], [1., 0.]]))
        >>> rates.confusion.shape                    # [m, k, k]
        (2, 2, 2)
        >>> round(float(rates.tpr_gap), 4), round(float(rates["error"]), 4)
        (0.1081, 0.2205)
    """
    check_family(family, "bayes_rates_1d")
    check_univariate(family, "bayes_rates_1d", "bayes_rates_mc")
    k = family.k
    if k > 2 and grid_size < 2:
        raise ValueError(f"grid_size: must be at least 2; got {grid_size}.")
    cost = check_cost(cost, k, family.dtype, "bayes_rates_1d")
    return _rates_1d_impl(family.priors, family.means, family.covs, cost, int(grid_size))


@partial(jax.jit, static_argnames=("grid_size",))
def _rates_1d_impl(priors, means, covs, cost, grid_size):
    k, m = priors.shape[-2:]
    bshape = priors.shape[:-2]
    base = base_rates(priors)
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
    base = base_rates(priors)
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


def bayes_rates_mc(family: GaussianFamily, cost, key, n: int = 200_000) -> BayesRatesMC:
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
        :class:`BayesRatesMC`: the fields of :class:`BayesRates` plus ``confusion_se``,
        ``positive_rate_se``, ``error_se``, ``confusion_gap_se``, ``positive_rate_gap_se``,
        ``eo_gap_se``, ``dp_gap_se`` and, for ``k == 2``, ``tpr_gap_se`` and ``fpr_gap_se``.

    Raises:
        ValueError: if ``cost`` is not ``[k, k]`` or ``n < 1``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxsteer import GaussianFamily
        >>> from jaxsteer.bayes import bayes_rates_1d, bayes_rates_mc
        >>> fam = GaussianFamily.univariate(priors=[[0.3, 0.2], [0.2, 0.3]],
        ...     means=[[0., 1.], [2., 2.5]], stds=[[1., 1.], [1., 2.]])
        >>> cost = jnp.array([[0., 1.], [1., 0.]])
        >>> mc = bayes_rates_mc(fam, cost, jax.random.PRNGKey(0), n=100_000)
        >>> exact = bayes_rates_1d(fam, cost)
        >>> bool(abs(mc.eo_gap - exact.eo_gap) < 5 * mc.eo_gap_se)
        True
    """
    check_family(family, "bayes_rates_mc")
    k = family.k
    if int(n) < 1:
        raise ValueError(f"n: must be a positive number of samples per subgroup; got {n}.")
    n = int(n)
    cost = check_cost(cost, k, family.dtype, "bayes_rates_mc")
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
    base = base_rates(priors)
    r = _summaries(conf, base, priors, cost)

    se = jnp.sqrt(conf * (1.0 - conf) / n)
    pos_se = jnp.sqrt(jnp.einsum("...ia,...aij->...aj", base**2, se**2))
    mean_c = jnp.einsum("ij,...aij->...ai", cost, conf)
    mean_c2 = jnp.einsum("ij,...aij->...ai", cost**2, conf)
    var_c = jnp.maximum(mean_c2 - mean_c**2, 0.0)  # [..., m, k]
    err_se = jnp.sqrt(jnp.einsum("...ia,...ai->...", priors**2, var_c) / n)
    conf_gap_se = _gap_se(conf, se, axis=-3)  # [..., k, k]
    pos_gap_se = _gap_se(r.positive_rate, pos_se, axis=-2)  # [..., k]
    tpr_gap_se = fpr_gap_se = None
    if k == 2:
        tpr_gap_se, fpr_gap_se = conf_gap_se[..., 1, 1], conf_gap_se[..., 0, 1]
        dp_gap_se = pos_gap_se[..., 1]
        eo_gap_se = jnp.where(r.tpr_gap >= r.fpr_gap, tpr_gap_se, fpr_gap_se)
    else:
        flat_gap = r.confusion_gap.reshape(bshape + (k * k,))
        flat_se = conf_gap_se.reshape(bshape + (k * k,))
        idx = jnp.argmax(flat_gap, axis=-1)[..., None]
        eo_gap_se = jnp.take_along_axis(flat_se, idx, axis=-1)[..., 0]
        jdx = jnp.argmax(r.positive_rate_gap, axis=-1)[..., None]
        dp_gap_se = jnp.take_along_axis(pos_gap_se, jdx, axis=-1)[..., 0]
    return BayesRatesMC(
        **r._asdict(), confusion_se=se, positive_rate_se=pos_se, error_se=err_se, confusion_gap_se=conf_gap_se,
        positive_rate_gap_se=pos_gap_se, eo_gap_se=eo_gap_se, dp_gap_se=dp_gap_se, tpr_gap_se=tpr_gap_se,
        fpr_gap_se=fpr_gap_se,
    )


# ---------------------------------------------------------------------------------------------
# the Bayes rule on data
# ---------------------------------------------------------------------------------------------


def bayes_predict(family: GaussianFamily, x, a, cost=None) -> jax.Array:
    """The group-aware cost-sensitive Bayes rule ``h_C(x, a) = argmin_j Σ_i C[i,j] q(i|a) f_ia(x)``.

    Args:
        family: an unbatched :class:`GaussianFamily` (log-normal families take ``x`` on the
            original, positive scale).
        x: ``[n, d]`` points.
        a: ``[n]`` group codes ``0 … m−1`` (integers, or floats holding whole numbers), checked as
            everywhere in the package (:mod:`jaxsteer._validate`) where concrete.
        cost: ``[k, k]`` cost matrix, ``C[i, j]`` = cost of predicting ``j`` for truth ``i``;
            default ``1 − I`` (the MAP rule, minimum error).

    Returns:
        ``[n]`` int32 predicted class codes.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxsteer import GaussianFamily
        >>> from jaxsteer.bayes import bayes_predict
        >>> fam = GaussianFamily.univariate(priors=[[0.3, 0.2], [0.2, 0.3]],
        ...     means=[[0., 1.], [2., 2.5]], stds=[[1., 1.], [1., 2.]])
        >>> x, a = jnp.array([[-1.0], [1.5], [1.5]]), jnp.array([0, 0, 1])
        >>> bayes_predict(fam, x, a).tolist()        # x = 1.5: class 1 in group 0, class 0 in group 1
        [0, 1, 0]
    """
    check_family(family, "bayes_predict")
    if family.batch_shape:
        raise ValueError("family: bayes_predict needs one unbatched family; index the batch first.")
    k, m = family.k, family.m
    x = jnp.asarray(x, family.dtype)
    if x.ndim != 2 or x.shape[1] != family.d:
        raise ValueError(f"x: expected points [n, {family.d}], got shape {x.shape}.")
    a = _validate.jax_codes(a, "a", "group", n=x.shape[0], size=m, rows_of="x")
    C = (1.0 - jnp.eye(k, dtype=family.dtype)) if cost is None else check_cost(cost, k, family.dtype, "bayes_predict")
    return _bayes_predict(family.priors, family.means, family.covs, family.lognormal, C, x, a)


@partial(jax.jit, static_argnums=(3,))
def _bayes_predict(priors, means, covs, lognormal, C, x, a):
    fam = GaussianFamily(priors, means, covs, lognormal=lognormal, validate=False)
    logf = fam.log_density(x)  # [n, k, m]
    base = base_rates(priors)
    logpi = jnp.where(base > 0, jnp.log(jnp.where(base > 0, base, 1.0)), -jnp.inf)
    lp = jnp.take_along_axis(logf + logpi, a[:, None, None], axis=2)[..., 0]  # [n, k]
    rel = jnp.exp(lp - jnp.max(lp, axis=-1, keepdims=True))
    return jnp.argmin(rel @ C, axis=-1).astype(jnp.int32)


# ---------------------------------------------------------------------------------------------
# exact rates of linear Bayes rules (binary, equal covariances within each group)
# ---------------------------------------------------------------------------------------------


def bayes_rates_linear(family: GaussianFamily, cost, *, rtol: float = 1e-8) -> BayesRates:
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
        :class:`BayesRates` (``confusion``, ``positive_rate``, ``error``, gaps, ``tpr_gap``,
        ``fpr_gap``, ``eo_gap``, ``dp_gap``), as :func:`bayes_rates_1d`.

    Raises:
        ValueError: if ``k != 2``, the class covariances differ within a group (use
            :func:`bayes_rates_mc`), or ``cost`` is not ``[2, 2]``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxsteer import GaussianFamily
        >>> from jaxsteer.bayes import bayes_rates_linear
        >>> S = jnp.array([[1.0, 0.3], [0.3, 2.0]])  # one covariance for every subgroup
        >>> fam = GaussianFamily(priors=jnp.array([[0.3, 0.2], [0.2, 0.3]]),
        ...     means=jnp.array([[[0., 0.], [0.5, 0.]], [[2., 1.], [2., 2.]]]),
        ...     covs=jnp.broadcast_to(S, (2, 2, 2, 2)))
        >>> r = bayes_rates_linear(fam, jnp.array([[0., 1.], [1., 0.]]))
        >>> round(float(r.eo_gap), 4), round(float(r.dp_gap), 4)
        (0.1228, 0.2355)
    """
    check_family(family, "bayes_rates_linear")
    if family.k != 2:
        raise ValueError(f"family: bayes_rates_linear needs k = 2 classes, got k = {family.k}; use bayes_rates_mc.")
    covs = family.covs
    if _validate.is_concrete(covs):
        c = np.asarray(covs)
        scale = np.max(np.abs(c), axis=(-2, -1), keepdims=True)
        if not np.allclose(c[..., 0, :, :, :], c[..., 1, :, :, :], rtol=0.0, atol=rtol * float(scale.max())):
            raise ValueError(
                "family: the class covariances differ within a group, so the Bayes rule is quadratic, "
                "not linear; use bayes_rates_mc (any family) or bayes_rates_1d (d = 1)."
            )
    cost = check_cost(cost, 2, family.dtype, "bayes_rates_linear")
    return _rates_linear_impl(family.priors, family.means, family.covs, cost)


@jax.jit
def _rates_linear_impl(priors, means, covs, cost):
    base = base_rates(priors)  # [..., 2, m]
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
