"""``nearest_ideal``: the nearest ideal distribution in KL divergence (MATH §3).

Problem → solver → output, as in OTT-JAX: the problem is a :class:`~jaxsteer.GaussianFamily` and
a few options; the output is a :class:`Solution` pytree that always says why the solve stopped
(``status``, a :class:`Status` code; ``converged``), after how many Newton ``iterations``, and its
final optimality ``residual``. ``init=`` warm-starts from an earlier solution.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsteer import _linalg
from jaxsteer.divergence import gaussian_kl
from jaxsteer.family import GaussianFamily
from jaxsteer.solve import _common, _engine, affirmative, all_groups
from jaxsteer.solve._engine import Status, status_message

__all__ = ["nearest_ideal", "Solution", "Template", "AffineMaps", "Status", "status_message", "INTERVENTIONS",
           "FORMS"]

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
        converged: ``[...]`` bool, ``status == Status.CONVERGED`` (the residual reached ``tol``).
        iterations: ``[...]`` Newton steps the solve took, summed over every moving group, start,
            restart and phase (each block alternation of ``all`` counts the Newton steps of its
            group solves; the closed forms take none).
        residual: ``[...]`` final relative optimality residual, dimensionless: for every moving
            group ``‖Aᵀ∇_{[A,b]}F‖_F / (W √d)`` (zero exactly at a stationary point; ``W`` the group's
            total weight); for ``all`` also the base rates, ``‖π − π*‖₁`` with ``π*`` their
            closed-form optimum for the final maps (the template is the closed-form minimiser for the
            maps and base rates, so its block is stationary exactly). The maximum is reported.
        status: ``[...]`` int32 :class:`Status` code: why the solve stopped
            (``status_message(code)`` says it in words).
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
    status: jax.Array
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

    def messages(self) -> list[str]:
        """Why the solve stopped, in words (concrete solutions only): one sentence per distinct status
        in the batch, most severe first, with the number of families it applies to where they differ."""
        codes = np.asarray(self.status).reshape(-1)
        distinct = sorted(set(codes.tolist()), reverse=True)
        if len(distinct) == 1:
            return [status_message(distinct[0])]
        return [f"{int(np.sum(codes == c))} of {codes.size} families: {status_message(c)}" for c in distinct]


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
    tol=None,
    max_iter=300,
    max_outer=30,
    method: str = "auto",
    chunk_size: int | str | None = "auto",
    lockstep: bool | None = None,
    init: Solution | None = None,
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
        tol: relative optimality residual (finite, > 0); default ``1e-10`` (float64) or ``1e-4``
            (float32). Traced: a new value does not recompile, and a jitted caller may pass an array.
        max_iter: Newton steps per group solve (and per joint phase of ``all``), ``≥ 1`` (``≥ 0``
            with ``init``: ``0`` evaluates ``init`` on this family). Traced. The affine form can
            need well over 100 from the symmetric start (measured: 153 on 13-class sentence
            embeddings at d = 64, where 100 stopped at residual 6e-4 with a KL 0.1% too high).
        max_outer: at most this many block alternations (template, maps, priors) before the joint
            Newton phase of ``all`` (``≥ 1``; traced).
        method: ``"auto"`` uses the closed forms where MATH gives them (``d = 1``); ``"newton"``
            forces the iterative solver everywhere (for cross-checks).
        chunk_size: how a batch is laid out. ``"auto"`` (default): on CPU one family after the
            other (``1``) from ``d = 16``, in vmapped chunks below (64 up to ``d = 4``, else 16: there a
            call's fixed cost outweighs its flops); one vmapped batch on GPU/TPU (``None``). ``None``: one ``vmap`` over the
            batch, which iterates until its slowest family has converged (lock-step). An int ``n``:
            chunks of ``n`` families one after the other (``lax.map``; vmapped within a chunk), so a
            straggler holds up fewer families; ``1`` solves them one by one without ``vmap``, which
            is fastest on CPU (batched LAPACK runs as a loop there, and a problem's data stay in
            cache). Results agree across layouts to the solver tolerance (rounding differs).
        lockstep: fixed-shape inner loops (a masked CG ``scan``, a line search that tries a few step
            lengths at once, convergence tested every second step), the layout for vmapped batches on
            accelerators. ``None`` (default): on when the backend is GPU/TPU and the batch is vmapped.
        init: a :class:`Solution` of an earlier call with the same options and shapes (for example on
            the previous batch of a training loop) to start from: the affirmative maps, or the
            template, maps and base rates of ``all``. A warm start takes a few Newton steps where the
            family has moved little. In the symmetric affirmative form (convex) the optimum is the
            cold one; in the affine form and for ``all`` the solve follows the local optimum that
            ``init`` lies in (a cold solve compares several starts and restarts).

    Returns:
        A :class:`Solution`. Group marginals are preserved exactly; ``jax.grad`` of ``kl`` is exact
        by the envelope theorem, and derivatives of ``target``, ``maps`` and ``template`` come from
        implicit differentiation of the optimality conditions.

    Raises:
        ValueError: unknown ``intervention``/``form``/``method``, ``reference`` out of range, fewer
            than two classes or groups, a bad ``tol``/``max_iter``/``max_outer``/``chunk_size``, an
            ``init`` that does not match, or (when concrete) a subgroup with zero prior.

    Example:
        >>> from jaxsteer import GaussianFamily, nearest_ideal
        >>> fam = GaussianFamily.univariate(priors=[[.3, .2], [.2, .3]],
        ...                                 means=[[0., 1.], [2., 2.5]], stds=[[1., 1.], [1., 2.]])
        >>> sol = nearest_ideal(fam, intervention="affirmative", form="affine")
        >>> round(float(sol.kl), 4), sol.messages()
        (0.1037, ['converged (optimality residual <= tol)'])
        >>> sol.target.means[..., 0].round(3)           # [class, group]: group 1's means moved
        Array([[0.   , 0.897],
               [2.   , 3.118]], dtype=float32)
        >>> again = nearest_ideal(fam.replace(covs=fam.covs * 1.05), form="affine", init=sol)   # warm start
        >>> round(float(again.kl), 4), bool(again.converged)
        (0.1032, True)
    """
    _check_options(family, intervention, form, reference, reference_class, method)
    chunk, lockstep = _layout(chunk_size, lockstep, family.d)
    check_limits(tol, max_iter, max_outer, warm=init is not None)
    tol = default_tol(family.dtype) if tol is None else tol
    batch = family.batch_shape
    k, m, d = family.k, family.m, family.d
    flat = family.replace(
        priors=family.priors.reshape((-1, k, m)),
        means=family.means.reshape((-1, k, m, d)),
        covs=family.covs.reshape((-1, k, m, d, d)),
    )
    start = None
    if init is not None:
        start = _warm_start(init, family, intervention, form, reference, reference_class)
    config = _engine.Config(lockstep=True) if lockstep else _engine.DEFAULT
    args = (flat.priors, flat.means, flat.covs, jnp.asarray(int(reference)), jnp.asarray(tol, family.dtype),
            jnp.asarray(max_iter, jnp.int32), jnp.asarray(max_outer, jnp.int32), start)
    options = dict(intervention=intervention, reference_class=int(reference_class), symmetric=form == "symmetric",
                   use_closed_form=method == "auto", chunk_size=chunk, config=config)
    out = _dispatch(args, options, d, chunk)

    def unflat(x):
        return x.reshape(batch + x.shape[1:])

    out = jax.tree_util.tree_map(unflat, out)
    t = out.target
    target = GaussianFamily(priors=t.priors, means=t.means, covs=t.covs, lognormal=family.lognormal, validate=False)
    return Solution(
        target=target, kl=t.kl_priors + t.kl_features, kl_features=t.kl_features, kl_priors=t.kl_priors,
        subgroup_kl=t.subgroup_kl, template=Template(out.nu, out.Gamma, out.pi), maps=AffineMaps(out.A, out.b),
        weights=t.priors / family.priors,
        converged=out.status == Status.CONVERGED, iterations=out.iterations, residual=out.residual,
        status=out.status, intervention=intervention, form=form, reference=int(reference),
        reference_class=int(reference_class),
    )


def _solve_flat(q, mu, S, reference, tol, max_iter, max_outer, init, *, intervention, reference_class,
                symmetric, use_closed_form, chunk_size, config):
    """All problems of a flattened batch ``[n, ...]`` (one compilation per shape and static options;
    ``reference``, ``tol``, ``max_iter`` and ``max_outer`` are traced)."""
    opts = dict(reference_class=reference_class, symmetric=symmetric, tol=tol, max_iter=max_iter,
                use_closed_form=use_closed_form, config=config)
    if intervention == "affirmative":
        fn = functools.partial(_affirmative_one, **opts)
    else:
        fn = functools.partial(all_groups.solve_one, max_outer=max_outer, **opts)

    def one(args):
        q_, mu_, S_, init_ = args
        return fn(q_, mu_, S_, reference, init=init_)

    args = (q, mu, S, init)
    if chunk_size == 1:  # no vmap: one problem at a time, its loops and conds unbatched
        if q.shape[0] == 1:
            return jax.tree_util.tree_map(lambda t: t[None], one(jax.tree_util.tree_map(lambda t: t[0], args)))
        return jax.lax.map(one, args)
    if chunk_size is None or chunk_size >= q.shape[0]:
        return jax.vmap(one)(args)
    # Chunks one after the other; each stops at its own slowest problem (lax.map vmaps within a chunk).
    return jax.lax.map(one, args, batch_size=chunk_size)


_STATIC = ("intervention", "reference_class", "symmetric", "use_closed_form", "chunk_size", "config")
#: Below this dimension a CPU solve runs one family at a time with single-threaded matrix products:
#: small products gain nothing from XLA's thread pool and lose its synchronisation (measured, one
#: family at a time, affirmative/symmetric: d = 16 782 → 643 µs per family; d = 64 the same, 17.9 vs
#: 17.4 ms; d = 128 multi-threaded is faster, 161 vs 167 ms). Use the cores through sharding instead.
SINGLE_THREAD_MAX_D = 64
_SOLVERS = {
    False: jax.jit(_solve_flat, static_argnames=_STATIC),
    True: jax.jit(_solve_flat, static_argnames=_STATIC, compiler_options={"xla_cpu_multi_thread_eigen": False}),
}


def _dispatch(args, options, d: int, chunk):
    """Run the compiled solver: single-threaded products for small CPU problems solved at the top level
    (compiler options only apply to a top-level ``jit``; inside a caller's ``jit`` the caller's apply)."""
    small = jax.default_backend() == "cpu" and chunk == 1 and d <= SINGLE_THREAD_MAX_D
    traced = any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(args))
    if small and not traced:
        try:
            return _SOLVERS[True](*args, **options)
        except ValueError as e:  # a constant family inside a caller's jit: nested, so no options
            if "compiler_options" not in str(e):
                raise
    return _SOLVERS[False](*args, **options)


def compiled_programs() -> int:
    """How many solver programs :func:`nearest_ideal` has compiled in this process (for tests)."""
    return sum(f._cache_size() for f in _SOLVERS.values())


#: On CPU, ``chunk_size="auto"`` solves small families in vmapped chunks (there a call's fixed cost
#: outweighs its flops): chunks of ``CPU_TINY_CHUNK`` up to ``d = CPU_TINY_D``, of ``CPU_SMALL_CHUNK``
#: below ``d = CPU_SMALL_D``, and larger families one by one. Measured (2-core CPU, float64,
#: affirmative, problems/s, chunks of 1 / 16 / 64): symmetric d = 4 (batch 4,096) — / 10,390 /
#: 17,849 (256: 17,724), d = 8 1,817 / 4,389 / 4,310, d = 16 1,181 / 1,165 / 926; affine d = 4 (batch
#: 4,096) — / 1,205 / 1,701 (256: 1,234), d = 8 (batch 512) — / 185 / 129.
CPU_TINY_D, CPU_TINY_CHUNK = 4, 64
CPU_SMALL_D, CPU_SMALL_CHUNK = 16, 16


def _cpu_chunk(d: int) -> int:
    return CPU_TINY_CHUNK if d <= CPU_TINY_D else CPU_SMALL_CHUNK if d < CPU_SMALL_D else 1


def _layout(chunk_size, lockstep, d: int):
    """``(chunk, lockstep)`` for ``_solve_flat`` from the user's options, ``d`` and the default backend."""
    accelerator = jax.default_backend() != "cpu"
    if isinstance(chunk_size, str):
        if chunk_size != "auto":
            raise ValueError(f"chunk_size: must be 'auto', None or a positive integer; got {chunk_size!r}.")
        chunk_size = None if accelerator else _cpu_chunk(d)
    elif chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer))
                                     or int(chunk_size) < 1):
        raise ValueError(f"chunk_size: must be 'auto', None or a positive integer; got {chunk_size!r}.")
    if lockstep is None:
        lockstep = accelerator and chunk_size != 1
    elif not isinstance(lockstep, (bool, np.bool_)):
        raise ValueError(f"lockstep: must be True, False or None (automatic); got {lockstep!r}.")
    return (None if chunk_size is None else int(chunk_size)), bool(lockstep)


def check_limits(tol, max_iter, max_outer=1, *, warm: bool):
    """``tol`` finite and > 0 (or None: the default), ``max_iter ≥ 1`` (``≥ 0`` warm), ``max_outer ≥ 1``,
    where concrete (traced values are the caller's responsibility)."""
    if tol is not None and not isinstance(tol, jax.core.Tracer):
        t = np.asarray(tol)
        if t.ndim or not np.issubdtype(t.dtype, np.number) or not np.isfinite(t) or t <= 0:
            raise ValueError(f"tol: must be a finite number > 0 (a relative residual such as 1e-10); got {tol!r}.")
    for name, value, low in (("max_iter", max_iter, 0 if warm else 1), ("max_outer", max_outer, 1)):
        if isinstance(value, jax.core.Tracer):
            continue
        v = np.asarray(value)
        if v.ndim or not np.issubdtype(v.dtype, np.integer) or isinstance(value, bool) or int(v) < low:
            hint = " (0 only with init=)" if name == "max_iter" and not warm else ""
            raise ValueError(f"{name}: must be an integer >= {low}{hint}; got {value!r}.")


def _warm_start(init, family: GaussianFamily, intervention, form, reference, reference_class):
    """The solver's start from an earlier :class:`Solution`, flattened like the batch."""
    if not isinstance(init, Solution):
        raise TypeError(f"init: expected the Solution of an earlier nearest_ideal call, got {type(init).__name__}.")
    if intervention == "affirmative":
        ours = (intervention, form, int(reference), int(reference_class))
        theirs = (init.intervention, init.form, init.reference, init.reference_class)
    else:
        ours = (intervention, form, int(reference_class))
        theirs = (init.intervention, init.form, init.reference_class)
    if ours != theirs:
        names = ("intervention, form, reference, reference_class" if intervention == "affirmative"
                 else "intervention, form, reference_class")
        raise ValueError(f"init: solved with ({names}) = {theirs}, but this call uses {ours}; pass a "
                         "solution of the same problem, or init=None.")
    k, m, d = family.k, family.m, family.d
    want = family.batch_shape + (m, d, d)
    if tuple(init.maps.A.shape) != want:
        raise ValueError(f"init: its maps have shape {tuple(init.maps.A.shape)}, but this family needs {want} "
                         "(the same batch shape, groups and dimension).")
    A, b, tpl = init.maps.A, init.maps.b, init.template
    if intervention == "affirmative":
        Bw = affirmative.whitened_maps(A, b, tpl.means, tpl.covs, int(reference_class))
        return Bw.reshape((-1, m, d, d + 1)).astype(family.dtype)
    B = jnp.concatenate([A, b[..., None]], axis=-1)
    x = all_groups.Params(tpl.means.reshape((-1, k, d)), tpl.covs.reshape((-1, k, d, d)),
                          B.reshape((-1, m, d, d + 1)), tpl.base_rates.reshape((-1, k)))
    return jax.tree_util.tree_map(lambda t: jnp.asarray(t, family.dtype), x)


def _check_options(family, intervention, form, reference, reference_class, method):
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


def _affirmative_one(q, mu, S, reference, *, reference_class, symmetric, tol, max_iter, use_closed_form,
                     init=None, config=_engine.DEFAULT):
    r, c = reference, reference_class
    sg_stop = jax.lax.stop_gradient((q, mu, S))
    raw, _ = affirmative.solve(*sg_stop, reference=r, reference_class=c, symmetric=symmetric,
                               tol=tol, max_iter=max_iter, use_closed_form=use_closed_form,
                               init=None if init is None else jax.lax.stop_gradient(init), config=config)
    f = affirmative.residual_fn(q, mu, S, reference=r, reference_class=c, symmetric=symmetric)
    B = _common.implicit(f, raw.B)  # implicit derivatives of the maps
    sg = _common.subgroups(mu, S)
    tpl, B_ref, inv_root = _common.template_from_group(sg, r, c)
    q_t = affirmative.target_priors(q, r)
    is_ref = (jnp.arange(q.shape[1]) == r)[:, None, None]
    # Envelope theorem: the value at the solution, solution held fixed (the reference map is a
    # function of θ and must stay one).
    B_val = jnp.where(is_ref, B_ref[None], jax.lax.stop_gradient(raw.B))
    target = _assemble(q, sg, tpl, B, B_val, q_t)
    # Template in the reference group's own coordinates: z' = Σ_cr^{-1/2}(z − μ_cr).
    A_w, b_w = B[:, :, :-1], B[:, :, -1]
    A = A_w @ inv_root
    b = b_w - jnp.einsum("aij,j->ai", A, mu[c, r])
    return _common.Solved(
        target, A=A, b=b, nu=mu[:, r], Gamma=S[:, r], pi=q[:, r] / jnp.sum(q[:, r]),
        status=raw.status, iterations=raw.iterations, residual=raw.residual,
    )


def _assemble(q, sg, tpl, B, B_val, q_t) -> _common.TargetKL:
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
    return _common.TargetKL(q_t, means, covs, kl_features, kl_priors, sub)

