"""``nearest_ideal``: the nearest ideal distribution in KL divergence (MATH §3).

Problem → solver → output, as in OTT-JAX: the problem is a :class:`~jaxsteer.GaussianFamily` and
a few static options; the output is a :class:`Solution` pytree that always says whether it
``converged``, after how many ``iterations``, and its final optimality ``residual``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsteer import _linalg
from jaxsteer.divergence import gaussian_kl
from jaxsteer.family import GaussianFamily
from jaxsteer.solve import _common, affirmative, all_groups

__all__ = ["nearest_ideal", "Solution", "Template", "AffineMaps", "INTERVENTIONS", "FORMS"]

INTERVENTIONS = ("affirmative", "all")
FORMS = ("symmetric", "affine")
METHODS = ("auto", "newton")


class Template(NamedTuple):
    """The ideal family's class template: ``X | Y=i`` is ``N(means[i], covs[i])`` in template coordinates.

    ``means [..., k, d]``, ``covs [..., k, d, d]``, ``base_rates [..., k]`` (``π_i``, equal in every group).
    For intervention ``affirmative`` template coordinates are the reference group's own coordinates;
    for ``all`` they are gauge-fixed: the reference class is ``N(0, I)`` and, in the affine form,
    group 0's map is symmetric positive definite.
    """

    means: jax.Array
    covs: jax.Array
    base_rates: jax.Array


class AffineMaps(NamedTuple):
    """Per-group affine maps from template to group coordinates: ``x = A[a] z + b[a]``.

    ``A [..., m, d, d]``, ``b [..., m, d]``.
    """

    A: jax.Array
    b: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Solution:
    """Output of :func:`nearest_ideal` (a pytree; every array has the family's batch axes in front).

    Attributes:
        target: the ideal :class:`GaussianFamily` ``θ̃`` (same group marginals as the input).
        kl: ``KL(θ̃ ‖ θ)`` in nats, ``[...]`` (= ``kl_priors + kl_features``).
        kl_features: ``Σ_ia q̃[i,a] KL(N(μ̃_ia, Σ̃_ia) ‖ N(μ_ia, Σ_ia))``.
        kl_priors: ``Σ_ia q̃[i,a] ln(q̃[i,a] / q[i,a])``.
        subgroup_kl: ``[..., k, m]`` the feature KL of every subgroup.
        template: :class:`Template`.
        maps: :class:`AffineMaps` from template to group coordinates; ``μ̃_ia = A_a ν_i + b_a``,
            ``Σ̃_ia = A_a Γ_i A_aᵀ``.
        weights: ``q̃ / q``, ``[..., k, m]``: the sample weights that realise the prior part.
        converged: ``[...]`` bool, ``residual <= tol``.
        iterations: ``[...]`` Newton steps (``affirmative``) or alternations (``all``).
        residual: ``[...]`` final relative optimality residual, dimensionless: for every moving
            group ``‖Aᵀ∇_{[A,b]}F‖_F / (W √d)`` (zero exactly at a stationary point; ``W`` the group's
            total weight); for ``all`` also the template and base-rate blocks. The maximum is reported.
        intervention, form, reference, reference_class: the options used (static).
    """

    target: GaussianFamily
    kl: jax.Array
    kl_features: jax.Array
    kl_priors: jax.Array
    subgroup_kl: jax.Array
    template: Template
    maps: AffineMaps
    weights: jax.Array
    converged: jax.Array
    iterations: jax.Array
    residual: jax.Array
    intervention: str = dataclasses.field(metadata=dict(static=True), default="affirmative")
    form: str = dataclasses.field(metadata=dict(static=True), default="symmetric")
    reference: int = dataclasses.field(metadata=dict(static=True), default=0)
    reference_class: int = dataclasses.field(metadata=dict(static=True), default=0)

    def __repr__(self) -> str:
        kl = np.asarray(self.kl)
        conv = np.asarray(self.converged)
        kl_s = f"{float(kl):.6g}" if kl.ndim == 0 else f"array{kl.shape}"
        return (
            f"Solution(intervention={self.intervention!r}, form={self.form!r}, kl={kl_s}, "
            f"converged={bool(conv.all())}, target={self.target!r})"
        )


def default_tol(dtype) -> float:
    """Relative residual tolerance: ``1e-10`` in float64, ``1e-4`` in float32."""
    return 1e-10 if jnp.finfo(dtype).bits >= 64 else 1e-4


def nearest_ideal(
    family: GaussianFamily,
    *,
    intervention: str = "affirmative",
    form: str = "symmetric",
    reference: int = 0,
    reference_class: int = 0,
    tol: float | None = None,
    max_iter: int = 300,
    max_outer: int = 30,
    method: str = "auto",
    chunk_size: int | None = None,
) -> Solution:
    """The ideal family nearest to ``family`` in ``KL(θ̃ ‖ θ)`` (MATH §3).

    Args:
        family: a :class:`GaussianFamily` (or log-normal), priors ``[..., k, m]``, means
            ``[..., k, m, d]``, covs ``[..., k, m, d, d]``; every leading axis is a batch axis.
        intervention: ``"affirmative"`` — group ``reference`` stays exactly as it is and every other
            group moves (its base rates become the reference's); ``"all"`` — every group moves,
            base rates become a common ``π`` (restarted from every group as reference, best kept).
        form: ``"symmetric"`` — the paper's family (template-to-group maps ``A_a Γ_c^{1/2}`` symmetric
            positive definite); ``"affine"`` — any invertible affine maps (never worse).
        reference: the group held fixed by ``affirmative`` (an int in ``[0, m)``; traced, so one
            compilation serves every value). Ignored by ``all``, which restarts from every group.
        reference_class: the class ``c`` that defines the symmetric form's whitening (static).
        tol: relative optimality residual; default ``1e-10`` (float64) or ``1e-4`` (float32).
        max_iter: Newton steps per group solve (and per joint phase of ``all``). The affine form can
            need well over 100 from the symmetric start (measured: 153 on 13-class sentence
            embeddings at d = 64, where 100 stopped at residual 6e-4 with a KL 0.1% too high).
        max_outer: at most this many block alternations (template, maps, priors) before the joint
            Newton phase of ``all`` (matrix-free Newton–CG with the template in closed form);
            ``max_iter`` bounds that phase.
        method: ``"auto"`` uses the closed forms where MATH gives them (``d = 1``); ``"newton"``
            forces the iterative solver everywhere (for cross-checks).
        chunk_size: solve the batch in chunks of this many families, one chunk after the other
            (``lax.map``), instead of all at once (``None``, the default: one ``vmap``). A vmapped batch
            iterates until its slowest family has converged; chunks bound how many families wait for a
            straggler (the affine form and ``all`` have them), at the price of smaller batched products.
            ``1`` solves the families one by one. Results agree to the solver tolerance (rounding differs).

    Returns:
        A :class:`Solution`. Group marginals are preserved exactly; ``jax.grad`` of ``kl`` is exact
        by the envelope theorem, and derivatives of ``target``, ``maps`` and ``template`` come from
        implicit differentiation of the optimality conditions.

    Raises:
        ValueError: unknown ``intervention``/``form``/``method``, ``reference`` out of range, fewer
            than two classes or groups, or (when concrete) a subgroup with zero prior.

    Example:
        >>> fam = GaussianFamily.univariate(priors=[[.3, .2], [.2, .3]],
        ...                                 means=[[0., 1.], [2., 2.5]], stds=[[1., 1.], [1., 2.]])
        >>> sol = nearest_ideal(fam, intervention="affirmative", form="affine")
        >>> sol.kl, sol.target.means[..., 0]
    """
    _check_options(family, intervention, form, reference, reference_class, method, max_iter, max_outer)
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer))
                                   or int(chunk_size) < 1):
        raise ValueError(f"chunk_size: must be a positive integer or None (one vmapped batch); got {chunk_size!r}.")
    tol = default_tol(family.dtype) if tol is None else float(tol)
    batch = family.batch_shape
    k, m, d = family.k, family.m, family.d
    flat = family.replace(
        priors=family.priors.reshape((-1, k, m)),
        means=family.means.reshape((-1, k, m, d)),
        covs=family.covs.reshape((-1, k, m, d, d)),
    )
    out = _solve_flat(
        flat.priors, flat.means, flat.covs, jnp.asarray(int(reference)), intervention=intervention,
        reference_class=int(reference_class),
        symmetric=form == "symmetric", tol=tol, max_iter=int(max_iter), max_outer=int(max_outer),
        use_closed_form=method == "auto", chunk_size=None if chunk_size is None else int(chunk_size),
    )

    def unflat(x):
        return x.reshape(batch + x.shape[1:])

    out = jax.tree_util.tree_map(unflat, out)
    target = GaussianFamily(priors=out["priors"], means=out["means"], covs=out["covs"],
                            lognormal=family.lognormal, validate=False)
    return Solution(
        target=target, kl=out["kl_priors"] + out["kl_features"], kl_features=out["kl_features"],
        kl_priors=out["kl_priors"], subgroup_kl=out["subgroup_kl"],
        template=Template(out["nu"], out["Gamma"], out["pi"]),
        maps=AffineMaps(out["A"], out["b"]), weights=out["priors"] / family.priors,
        converged=out["converged"], iterations=out["iterations"], residual=out["residual"],
        intervention=intervention, form=form, reference=int(reference),
        reference_class=int(reference_class),
    )


@functools.partial(
    jax.jit,
    static_argnames=("intervention", "reference_class", "symmetric", "tol", "max_iter",
                     "max_outer", "use_closed_form", "chunk_size"),
)
def _solve_flat(q, mu, S, reference, *, intervention, reference_class, symmetric, tol, max_iter,
                max_outer, use_closed_form, chunk_size=None):
    """All problems of a flattened batch ``[n, ...]`` at once (one compilation per shape and options)."""
    opts = dict(reference_class=reference_class, symmetric=symmetric, tol=tol,
                max_iter=max_iter, use_closed_form=use_closed_form)
    if intervention == "affirmative":
        fn = functools.partial(_affirmative_one, **opts)
    else:
        fn = functools.partial(all_groups.solve_one, max_outer=max_outer, **opts)
    # `reference` is traced (one compilation serves every reference group).
    if chunk_size is None or chunk_size >= q.shape[0]:
        return jax.vmap(fn, in_axes=(0, 0, 0, None))(q, mu, S, reference)
    # Chunks one after the other; each stops at its own slowest problem (lax.map vmaps within a chunk).
    return jax.lax.map(lambda args: fn(*args, reference), (q, mu, S), batch_size=chunk_size)


def _check_options(family, intervention, form, reference, reference_class, method, max_iter, max_outer):
    if not isinstance(family, GaussianFamily):
        raise TypeError(f"family: expected a GaussianFamily, got {type(family).__name__}.")
    if intervention not in INTERVENTIONS:
        raise ValueError(f"intervention: unknown value {intervention!r}; use one of {INTERVENTIONS}.")
    if form not in FORMS:
        raise ValueError(f"form: unknown value {form!r}; use one of {FORMS}.")
    if method not in METHODS:
        raise ValueError(f"method: unknown value {method!r}; use one of {METHODS}.")
    k, m = family.k, family.m
    if k < 2:
        raise ValueError(
            "family: nearest_ideal needs at least 2 classes (k >= 2); with one class every "
            "classifier is constant and the family is already ideal."
        )
    if m < 2:
        raise ValueError(
            "family: nearest_ideal needs at least 2 groups (m >= 2); with one group every "
            "classifier is trivially group-fair and the family is already ideal."
        )
    if not isinstance(reference, (int, np.integer)) or not 0 <= int(reference) < m:
        raise ValueError(f"reference: must be a group index in [0, {m}); got {reference!r}.")
    if not isinstance(reference_class, (int, np.integer)) or not 0 <= int(reference_class) < k:
        raise ValueError(f"reference_class: must be a class index in [0, {k}); got {reference_class!r}.")
    if int(max_iter) < 1 or int(max_outer) < 1:
        raise ValueError("max_iter, max_outer: must be positive integers.")
    q = family.priors
    if not isinstance(q, jax.core.Tracer):
        zero = np.argwhere(np.asarray(q) <= 0)
        if zero.size:
            idx = tuple(int(i) for i in zero[0])
            raise ValueError(
                f"family.priors: subgroup (class {idx[-2]}, group {idx[-1]}) has zero prior, so its "
                "Gaussian is undefined and any ideal target that gives it mass is infinitely far "
                "(KL = inf). Drop the empty class or group, or merge it, before steering."
            )


# --------------------------------------------------------------------------------------------
# One affirmative problem with envelope-theorem KL and implicit derivatives.


def _affirmative_one(q, mu, S, reference, *, reference_class, symmetric, tol, max_iter, use_closed_form):
    r, c = reference, reference_class
    sg_stop = jax.lax.stop_gradient((q, mu, S))
    raw, _ = affirmative.solve(*sg_stop, reference=r, reference_class=c, symmetric=symmetric,
                               tol=tol, max_iter=max_iter, use_closed_form=use_closed_form)
    f = affirmative.residual_fn(q, mu, S, reference=r, reference_class=c, symmetric=symmetric)
    B = _common.implicit(f, raw.B)  # implicit derivatives of the maps
    sg = _common.subgroups(mu, S)
    tpl, B_ref, inv_root = _common.template_from_group(sg, r, c)
    q_t = affirmative.target_priors(q, r)
    is_ref = (jnp.arange(q.shape[1]) == r)[:, None, None]
    # Envelope theorem: the value at the solution, solution held fixed (the reference map is a
    # function of θ and must stay one).
    B_val = jnp.where(is_ref, B_ref[None], jax.lax.stop_gradient(raw.B))
    out = _assemble(q, sg, tpl, B, B_val, q_t)
    # Template in the reference group's own coordinates: z' = Σ_cr^{-1/2}(z − μ_cr).
    A_w, b_w = B[:, :, :-1], B[:, :, -1]
    A = A_w @ inv_root
    b = b_w - jnp.einsum("aij,j->ai", A, mu[c, r])
    out.update(
        A=A, b=b, nu=mu[:, r], Gamma=S[:, r], pi=q[:, r] / jnp.sum(q[:, r]),
        converged=raw.converged, iterations=raw.iterations, residual=raw.residual,
    )
    return out


def _assemble(q, sg, tpl, B, B_val, q_t) -> dict[str, Any]:
    """Target family from maps ``B`` (implicit derivatives) and KL values from ``B_val`` (envelope)."""

    def target_moments(Bx):
        A, b = Bx[:, :, :-1], Bx[:, :, -1]
        means = jnp.einsum("aij,kj->kai", A, tpl.u) + b[None]
        covs = _linalg.sym(jnp.einsum("aij,kjl,aml->kaim", A, tpl.G, A))
        return means, covs

    means, covs = target_moments(B)
    m_val, c_val = target_moments(B_val)
    sub = gaussian_kl(m_val, c_val, sg.mu, sg.S)
    kl_features = jnp.sum(q_t * sub)
    kl_priors = jnp.sum(q_t * (jnp.log(q_t) - jnp.log(q)))
    return dict(priors=q_t, means=means, covs=covs, kl_features=kl_features, kl_priors=kl_priors,
                subgroup_kl=sub)

