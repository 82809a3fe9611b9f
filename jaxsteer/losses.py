"""Differentiable fairness losses on hidden states: the distance of a batch to its nearest ideal family.

:func:`ideal_gap` fits the class×group Gaussian model ``θ(h)`` of a batch of hidden states (weighted,
shrunk; :func:`~jaxsteer.fit_family`) and returns ``V(θ) = min_{θ̃ ideal} KL(θ̃ ‖ θ(h))`` (MATH §3):
zero exactly when every cost-sensitive Bayes rule on the batch's model is fair, so adding it to a
training loss pulls the representation towards one on which fair classification is free.

**Gradient.** By the envelope theorem (MATH §7), ``∇_h V = ∇_h KL(θ̃(x) ‖ θ(h))`` at the optimal
variables ``x*`` held fixed. The solver therefore runs on ``stop_gradient(θ)`` (its iterations are
never differentiated, and no implicit-function machinery is traced) and the loss re-evaluates the
objective at ``x*`` in closed form, differentiably in ``θ(h)``:

* ``affirmative``: ``x*`` are the moving groups' maps in the template coordinates whitened by the
  reference group's class-``c`` covariance (where the symmetric form's constraint set does not depend
  on ``θ``); the reference group's own subgroups, and with them the template, move with ``θ``;
* ``all``: ``x*`` are the template, every group's map and the base rates ``π``; the target's
  subgroup Gaussians are then fixed and only ``q̃ = π p(θ)`` and ``θ`` move.

**Warm start.** ``warm_start=previous_solution`` (from ``return_solution=True``) is passed to
:func:`~jaxsteer.nearest_ideal` as ``init=``: the solver starts from the previous step's maps (and,
for ``all``, template and base rates), so that a training step costs a couple of Newton steps
instead of a full multi-start solve. The returned solution's ``status`` says whether the warm solve
reached ``tol``; if not, the value is that of the best point found (an upper bound of the gap) and
the next warm step continues from it (or call again with ``warm_start=None``). In the ``affine``
form and for ``all`` a warm start follows the local optimum it starts in (the cold solve compares
several starts); the symmetric ``affirmative`` problem is convex and reaches the same optimum from
any start.

Example::

    @jax.jit
    def loss_fn(params, x, y, a, warm):
        h = features(params, x)
        gap, sol = jaxsteer.losses.ideal_gap(h, y, a, num_classes=2, num_groups=2,
                                             warm_start=warm, return_solution=True)
        return task_loss(params, h, y) + lam * gap, sol
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxsteer import _linalg, _validate
from jaxsteer.divergence import gaussian_kl
from jaxsteer.estimate import fit_family
from jaxsteer.family import GaussianFamily
from jaxsteer.solve import FORMS, INTERVENTIONS, Solution, affirmative, check_limits, default_tol, nearest_ideal

__all__ = ["ideal_gap", "kl_to_target", "batch_family"]


def batch_family(h, y, a, *, num_classes: int, num_groups: int, shrinkage="ledoit_wolf",
                 sample_weight=None, ddof=1) -> GaussianFamily:
    """The class×group Gaussian model of a batch, differentiable in ``h`` (and ``sample_weight``).

    ``fit_family(h, y, a, ...)`` with static ``num_classes``/``num_groups`` (so it jits). Eagerly,
    the inputs are validated (every class×group cell needs at least 2 rows, and more than ``d``
    without shrinkage); under ``jit`` nothing is checked and an empty cell gives NaN.
    """
    return fit_family(h, y, a, shrinkage=shrinkage, sample_weight=sample_weight,
                      num_classes=int(num_classes), num_groups=int(num_groups), ddof=ddof)


def _sg(x):
    return jax.lax.stop_gradient(x)


# -- envelope values -----------------------------------------------------------------------------------


def _prior_parts(q, qt):
    return jnp.sum(qt * (jnp.log(qt) - jnp.log(q)))


def _affirmative_target(fam: GaussianFamily, Bw, r: int, c: int):
    """Target priors, means, covs when the moving groups' whitened maps ``Bw [m, d, d+1]`` are fixed.

    ``Bw[a] = [A_w | b_w]`` maps template coordinates ``z = Σ_cr^{-1/2}(x − μ_cr)`` (symmetric root)
    to group ``a``; in the reference group's own coordinates the map is ``A = A_w Σ_cr^{-1/2}``,
    ``b = b_w − A μ_cr``. The reference group's subgroups are kept exactly.
    """
    q, mu, S = fam.priors, fam.means, fam.covs
    m = q.shape[-1]
    p = jnp.sum(q, axis=0)
    qt = (q[:, r] / p[r])[:, None] * p[None, :]
    inv_root = _linalg.psd_inv_sqrt(S[c, r])
    A = Bw[:, :, :-1] @ inv_root
    b = Bw[:, :, -1] - jnp.einsum("aij,j->ai", A, mu[c, r])
    means = jnp.einsum("aij,kj->kai", A, mu[:, r]) + b[None]
    covs = _linalg.sym(jnp.einsum("aij,kjl,aml->kaim", A, S[:, r], A))
    is_ref = jnp.arange(m) == r
    means = jnp.where(is_ref[None, :, None], mu, means)
    covs = jnp.where(is_ref[None, :, None, None], S, covs)
    return qt, means, covs, A, b


def _affirmative_value(fam: GaussianFamily, Bw, r: int, c: int):
    qt, means, covs, _, _ = _affirmative_target(fam, Bw, r, c)
    sub = gaussian_kl(means, covs, fam.means, fam.covs)
    sub = jnp.where((jnp.arange(fam.m) == r)[None, :], 0.0, sub)
    return _prior_parts(fam.priors, qt) + jnp.sum(qt * sub)


def _all_value(fam: GaussianFamily, t_means, t_covs, pi):
    p = jnp.sum(fam.priors, axis=0)
    qt = pi[:, None] * p[None, :]
    sub = gaussian_kl(t_means, t_covs, fam.means, fam.covs)
    return _prior_parts(fam.priors, qt) + jnp.sum(qt * sub)


# -- solves on stop_gradient(θ) ---------------------------------------------------------------------------


def _whitened_maps(solution: Solution) -> jax.Array:
    """An ``affirmative`` solution's maps in its own whitened template coordinates, ``[m, d, d+1]``."""
    t = solution.template
    return affirmative.whitened_maps(solution.maps.A, solution.maps.b, t.means, t.covs, solution.reference_class)


def _check_warm(warm: Solution, intervention, form, reference, reference_class, m, d):
    if not isinstance(warm, Solution):
        raise TypeError(
            f"warm_start: expected the Solution of a previous ideal_gap(..., return_solution=True) call, "
            f"got {type(warm).__name__}."
        )
    ours = (intervention, form, reference, reference_class)
    theirs = (warm.intervention, warm.form, warm.reference, warm.reference_class)
    if intervention == "all":  # the reference group plays no part in `all`
        ours, theirs = ours[:2] + ours[3:], theirs[:2] + theirs[3:]
    if ours != theirs:
        names = ("intervention, form, reference, reference_class" if intervention == "affirmative"
                 else "intervention, form, reference_class")
        raise ValueError(f"warm_start: solved with ({names}) = {theirs}, but this call uses {ours}.")
    if warm.maps.A.shape != (m, d, d):
        raise ValueError(
            f"warm_start: its maps have shape {warm.maps.A.shape}, expected ({m}, {d}, {d}) (one unbatched "
            f"solution for this batch's groups and hidden dimension)."
        )


# -- public ------------------------------------------------------------------------------------------------


def _split_shrinkage(shrinkage):
    """``(static mode, traced value)``: strings and None are static, numbers travel as arrays."""
    if shrinkage is None or isinstance(shrinkage, str):
        return shrinkage, None
    if isinstance(shrinkage, bool):
        raise ValueError("shrinkage: expected 'ledoit_wolf', a float in [0, 1], or None; got a bool.")
    return "value", shrinkage


def _sizes(y, a, num_classes, num_groups) -> tuple[int, int]:
    """``(k, m)``: the given sizes, or ``max + 1`` of concrete codes."""
    out = []
    for codes, size, arg, name, what in ((y, num_classes, "num_classes", "y", "classes"),
                                         (a, num_groups, "num_groups", "a", "groups")):
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
                raise ValueError(f"{arg}: expected a Python int, got {type(size).__name__} {size!r}.")
            out.append(int(size))
        elif _validate.is_traced(codes):
            raise ValueError(
                f"{arg}: required when {name} is traced (inside jit the number of {what} fixes the shapes "
                f"of the batch model); pass {arg}=... ."
            )
        else:
            c = _validate.codes(codes, name, what[:-2] if what == "classes" else what[:-1])
            out.append(int(c.max()) + 1 if c.size else 0)
    return out[0], out[1]


def _check_inputs(h, y, a, sample_weight, k: int, m: int, ddof=1) -> None:
    """Eager checks of concrete inputs (under ``jit`` nothing is checked)."""
    if h.ndim != 2:
        raise ValueError(f"h: expected hidden states [n, d], got shape {h.shape}; flatten the leading axes.")
    if not jnp.issubdtype(h.dtype, jnp.floating):
        raise ValueError(f"h: expected floating hidden states, got dtype {h.dtype}.")
    n = h.shape[0]
    if _validate.is_concrete(h):
        _validate.finite_rows(h, "h")
    if not _validate.is_concrete(y, a):
        return
    yc = _validate.codes(y, "y", "class", n=n, size=k, size_arg="num_classes", rows_of="h")
    ac = _validate.codes(a, "a", "group", n=n, size=m, size_arg="num_groups", rows_of="h")
    keep = np.ones(n, bool)
    w = None
    if sample_weight is not None and _validate.is_concrete(sample_weight):
        w = _validate.sample_weight(sample_weight, n, rows_of="h")
        keep = w > 0
    counts = np.bincount(yc[keep] * m + ac[keep], minlength=k * m).reshape(k, m)
    if np.any(counts < 2):
        raise ValueError(
            "y, a: "
            + _validate.cells(counts < 2, lambda i, g: f"has {counts[i, g]} row{'' if counts[i, g] == 1 else 's'} in this batch")
            + "; every class×group cell needs at least 2 (use larger or stratified batches)."
        )
    if w is not None and isinstance(ddof, (int, float)):
        # Frequency weights: a cell's covariance is its scatter / (Σw − ddof), undefined if Σw ≤ ddof.
        total = np.bincount(yc * m + ac, weights=w, minlength=k * m).reshape(k, m)
        if np.any(total <= ddof):
            raise ValueError(
                "sample_weight: "
                + _validate.cells(total <= ddof, lambda i, g: f"has total weight {total[i, g]:.4g} ≤ ddof={ddof} in this batch")
                + ", so its covariance (scatter / (Σw − ddof)) is undefined. The weights are frequency weights: "
                "scale them up (e.g. to sum to the batch size per cell), or pass ddof=0."
            )


_STATIC = ("num_classes", "num_groups", "intervention", "form", "reference", "reference_class",
           "shrink_mode", "ddof", "return_solution")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _ideal_gap(h, y, a, sample_weight, shrink_value, warm_start, tol, max_iter, *, num_classes, num_groups,
               intervention, form, reference, reference_class, shrink_mode, ddof, return_solution):
    shrinkage = shrink_value if shrink_mode == "value" else shrink_mode
    fam = batch_family(h, y, a, num_classes=num_classes, num_groups=num_groups, shrinkage=shrinkage,
                       sample_weight=sample_weight, ddof=ddof)
    r, c = reference, reference_class
    fixed = _sg(fam)
    sol = nearest_ideal(fixed, intervention=intervention, form=form, reference=r, reference_class=c,
                        tol=default_tol(fam.dtype) if tol is None else tol, max_iter=max_iter,
                        init=None if warm_start is None else _sg(warm_start))
    if intervention == "all":
        value = _all_value(fam, sol.target.means, sol.target.covs, sol.template.base_rates)
    else:
        value = _affirmative_value(fam, _sg(_whitened_maps(sol)), r, c)
    return (value, sol) if return_solution else value


def ideal_gap(
    h,
    y,
    a,
    *,
    num_classes: int | None = None,
    num_groups: int | None = None,
    intervention: str = "affirmative",
    form: str = "symmetric",
    reference: int = 0,
    reference_class: int = 0,
    shrinkage="ledoit_wolf",
    sample_weight=None,
    ddof=1,
    warm_start: Solution | None = None,
    return_solution: bool = False,
    tol: float | None = None,
    max_iter: int = 300,
):
    """KL from the batch's class×group Gaussian model to its nearest ideal family (a scalar loss).

    Args:
        h: ``[n, d]`` hidden states (floating; the gradient flows to them).
        y: ``[n]`` integer class codes ``0..k−1``.
        a: ``[n]`` integer group codes ``0..m−1``.
        num_classes, num_groups: ``k`` and ``m`` (static). Inferred as ``max + 1`` of concrete ``y``
            and ``a``; required when they are traced (inside ``jit``), where they fix the shapes.
        intervention, form, reference, reference_class: as in :func:`~jaxsteer.nearest_ideal`
            (static). ``affirmative`` keeps group ``reference`` as it is and moves the others.
        shrinkage: covariance shrinkage of the batch model: ``"ledoit_wolf"`` (default; needed when
            a cell has about ``d`` rows or fewer), a float in ``[0, 1]`` (a fixed amount; may be
            traced), or ``None``.
        sample_weight: optional ``[n]`` non-negative weights (differentiable too).
        ddof: covariance degrees of freedom of the batch model.
        warm_start: the :class:`~jaxsteer.Solution` of a previous call (``return_solution=True``),
            to start the solver from (``nearest_ideal(..., init=warm_start)``); ``None`` for a cold
            solve.
        return_solution: also return the :class:`~jaxsteer.Solution` of this batch (no gradients;
            carry it to the next step as ``warm_start``, or build a ``Steer`` from it). Its
            ``status`` says whether the (warm) solve reached ``tol``, and if not, why not.
        tol, max_iter: solver tolerance (default 1e-10 in float64, 1e-4 in float32) and Newton steps;
            both traced (a new value does not recompile).
            With ``warm_start``, a small ``max_iter`` (1–2) amortises the solve over training steps:
            the value is then ``KL`` at the maps reached (an upper bound of the gap, tight as they
            converge) and the gradient is that bound's exact gradient. ``max_iter=0`` takes no Newton
            step: the value at the warm start.

    Returns:
        The scalar ``KL(θ̃ ‖ θ(h))`` in nats, or ``(kl, solution)``. Its gradient is exact by the
        envelope theorem (the solver is never differentiated), to the solver's tolerance.

    One compiled function per combination of the static options; jittable and differentiable
    inside user code (``h``, ``y``, ``a``, ``sample_weight``, a float ``shrinkage``, ``tol``,
    ``max_iter`` and ``warm_start`` may be traced). A warm-started call has its own compilation (the ``warm_start``
    pytree is an input); repeated warm calls do not recompile. Each class×group cell needs at least
    2 rows in the batch: checked when ``y`` and ``a`` are concrete; under ``jit`` an empty cell gives
    NaN.

    Example:
        >>> import jax, numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y, a = np.tile([0, 0, 1, 1], 50), np.tile([0, 1, 0, 1], 50)         # 50 rows per class × group
        >>> h = (rng.normal(size=(200, 1)) + y[:, None] + 0.5 * a[:, None]).astype(np.float32)   # [n, d = 1]
        >>> from jaxsteer.losses import ideal_gap
        >>> def loss(h, y, a):                # under jit num_classes, num_groups must be given
        ...     return ideal_gap(h, y, a, num_classes=2, num_groups=2, return_solution=True)
        >>> (gap, sol), grad = jax.jit(jax.value_and_grad(loss, has_aux=True))(h, y, a)
        >>> round(float(gap), 4), bool(sol.converged), grad.shape
        (0.0042, True, (200, 1))
        >>> h_next = h + 0.01 * rng.normal(size=h.shape).astype(np.float32)
        >>> gap_next = ideal_gap(h_next, y, a, warm_start=sol)     # k, m inferred from concrete y, a
        >>> round(float(gap_next), 4)                              # a few Newton steps from sol
        0.0043
    """
    if intervention not in INTERVENTIONS:
        raise ValueError(f"intervention: unknown value {intervention!r}; use one of {INTERVENTIONS}.")
    if form not in FORMS:
        raise ValueError(f"form: unknown value {form!r}; use one of {FORMS}.")
    k, m = _sizes(y, a, num_classes, num_groups)
    if k < 2 or m < 2:
        raise ValueError(f"num_classes, num_groups: need at least 2 of each, got {k}, {m}.")
    r, c = int(reference), int(reference_class)
    if not (0 <= r < m and 0 <= c < k):
        raise ValueError(f"reference, reference_class: must lie in [0, {m}) and [0, {k}); got {r}, {c}.")
    h = jnp.asarray(_validate.real_array(h, "h"))
    _check_inputs(h, y, a, sample_weight, k, m, ddof)
    if warm_start is not None:
        _check_warm(warm_start, intervention, form, r, c, m, h.shape[1])
    shrink_mode, shrink_value = _split_shrinkage(shrinkage)
    check_limits(tol, max_iter, warm=warm_start is not None)
    return _ideal_gap(
        h, y, a, sample_weight, shrink_value, warm_start, tol, max_iter, num_classes=k, num_groups=m,
        intervention=intervention, form=form, reference=r, reference_class=c, shrink_mode=shrink_mode,
        ddof=ddof, return_solution=bool(return_solution),
    )


@functools.partial(jax.jit, static_argnames=("shrink_mode", "ddof"))
def _kl_to_target(h, y, a, target, sample_weight, shrink_value, *, shrink_mode, ddof):
    shrinkage = shrink_value if shrink_mode == "value" else shrink_mode
    fam = batch_family(h, y, a, num_classes=target.k, num_groups=target.m, shrinkage=shrinkage,
                       sample_weight=sample_weight, ddof=ddof)
    sub = gaussian_kl(target.means, target.covs, fam.means, fam.covs)
    qt = target.priors
    return _prior_parts(fam.priors, qt) + jnp.sum(qt * sub)


def kl_to_target(h, y, a, target, *, shrinkage="ledoit_wolf", sample_weight=None, ddof=1):
    """``KL(target ‖ θ(h))``: the distance from a fixed family to the batch's class×group model.

    Args:
        h: ``[n, d]`` hidden states; y, a: ``[n]`` class and group codes.
        target: a :class:`~jaxsteer.GaussianFamily` (e.g. ``solution.target`` of an earlier batch)
            or a :class:`~jaxsteer.Solution` (its ``target``), with the batch's ``(k, m, d)``.
        shrinkage, sample_weight, ddof: of the batch model, as in :func:`ideal_gap`.

    Returns:
        The scalar joint KL (priors and features) in nats, differentiable in ``h`` (and ``target``).
        Unlike :func:`ideal_gap` the target does not follow the batch: for ``affirmative`` the
        gradients differ, since there the reference group's part of the target moves with ``θ(h)``.

    Example:
        >>> import jax, numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y, a = np.tile([0, 0, 1, 1], 50), np.tile([0, 1, 0, 1], 50)         # 50 rows per class × group
        >>> h = (rng.normal(size=(200, 1)) + y[:, None] + 0.5 * a[:, None]).astype(np.float32)   # [n, d = 1]
        >>> from jaxsteer import GaussianFamily
        >>> from jaxsteer.losses import kl_to_target
        >>> ideal = GaussianFamily.univariate(priors=np.full((2, 2), 0.25), means=[[0., 0.], [1., 1.]],
        ...                                   stds=np.ones((2, 2)))        # the same law in both groups
        >>> loss = kl_to_target(h, y, a, ideal)          # e.g. a fixed target: solution.target
        >>> float(loss) > 0, jax.grad(kl_to_target)(h, y, a, ideal).shape
        (True, (200, 1))
    """
    target = getattr(target, "target", target)
    if not isinstance(target, GaussianFamily):
        raise TypeError(f"target: expected a GaussianFamily or a Solution, got {type(target).__name__}.")
    if target.batch_shape:
        raise ValueError(f"target: expected one unbatched family, got batch shape {target.batch_shape}.")
    h = jnp.asarray(_validate.real_array(h, "h"))
    if h.ndim != 2 or h.shape[1] != target.d:
        raise ValueError(f"h: expected hidden states [n, {target.d}] to match the target, got shape {h.shape}.")
    _check_inputs(h, y, a, sample_weight, target.k, target.m, ddof)
    shrink_mode, shrink_value = _split_shrinkage(shrinkage)
    return _kl_to_target(h, y, a, target, sample_weight, shrink_value, shrink_mode=shrink_mode, ddof=ddof)
