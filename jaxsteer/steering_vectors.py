"""Group-fair steering vectors: ``h ↦ T_a(h) + α v`` with ``T_a`` the ``align`` map to the ideal family.

Steering a generative model towards an output adds a vector ``α v`` to a hidden state, classically
the difference of the class means of the states that precede the desired output and the others.
One vector for everybody steers groups unequally when their class configurations differ (the same
``α`` flips many rows of one group and few of another); one vector per group still leaves the
groups' spreads and base rates different. :func:`fair_steering` builds the intervention from the
nearest ideal family ``θ̃`` of the class×group Gaussian model of the hidden states (MATH §3–4):

* ``T_a(h) = A_a⁻¹(h − b_a)``, the ``align`` group map (:func:`jaxsteer.maps.align_maps`), puts every
  group into the template coordinates, where under ``θ̃`` the class-conditional laws
  ``N(ν_i, Γ_i)`` are the same in every group;
* ``v = ν_toward − ν_away``, the difference of the template's class means, is then one direction
  shared by every group. Equivalently ``v = A_a⁻¹(μ̃_{toward,a} − μ̃_{away,a})`` for every ``a``.

**What the guarantee covers.** On the steered distribution (the ideal family pushed through
``T_a`` and shifted by ``α v``) the class-conditional law of the steered state is ``N(ν_i + α v, Γ_i)``
in every group, so *any* readout that sees only the steered state, in particular the Bayes-optimal
readout refitted on the steered (ideal) distribution, has the same per-class rates in every group
for every ``α``: the same flip rate ``P(desired | y = other, a)`` and true-positive rate. On the fitted
family (the data) the rates move by at most the Pinsker bounds of :func:`jaxsteer.certificate`.
The guarantee is about the *distribution* of steered states: a **frozen** readout of the original
model (an LM head, the later layers of a network) was trained on the unsteered, group-specific
states and is not covered; whether it treats the groups equally after steering is an empirical
question (``benchmarks/experiments/generative_steering.py`` measures both readouts).

:class:`FairSteer` is the Flax NNX module, used like :class:`jaxsteer.nn.Steer` (group ids passed
explicitly or read from :func:`jaxsteer.nn.groups`, insertable with :func:`jaxsteer.nn.insert`); it
steers the last position, every position, or one given position per sequence, with ``α`` an
attribute or a call argument (traced under ``jit``: a sweep over ``α`` compiles once).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsteer import _validate
from jaxsteer import maps as _maps
from jaxsteer.estimate import SuffStats, fit_family, to_family
from jaxsteer.family import GaussianFamily
from jaxsteer.solve import FORMS, INTERVENTIONS, Solution, nearest_ideal

__all__ = ["FairSteering", "fair_steering", "FairSteer", "POSITIONS", "COORDINATES"]

#: Where :class:`FairSteer` steers a sequence of hidden states ``[..., T, d]``.
POSITIONS = ("last", "all")
#: The coordinates the steered states live in (see :func:`fair_steering`).
COORDINATES = ("template", "reference")


class FairSteering(NamedTuple):
    """A group-fair steering intervention ``h ↦ map_a(h) + α · direction`` (a pytree).

    Attributes:
        map: :class:`~jaxsteer.AffineMap` ``[m]``, the label-free group map (``align``, possibly
            followed by the reference group's template-to-group map, see ``coordinates``).
        direction: ``[d]`` the ideal family's class-mean difference in the same coordinates.
        solution: the :class:`~jaxsteer.Solution` it was built from.
        family: the fitted :class:`~jaxsteer.GaussianFamily` ``θ``.
    """

    map: _maps.AffineMap
    direction: jax.Array
    solution: Solution
    family: GaussianFamily

    def apply(self, h, a, alpha=1.0) -> jax.Array:
        """``map_a(h) + α v`` for states ``h [n, d]`` of groups ``a [n]`` (integer codes)."""
        out = self.map.apply(h, a)
        return out + jnp.asarray(alpha, out.dtype) * jnp.asarray(self.direction, out.dtype)


def _template_direction(solution: Solution, toward: int, away) -> jax.Array:
    """``ν_toward − ν_away`` (``away=None``: minus the base-rate-weighted mean of every other class)."""
    nu, pi = solution.template.means, solution.template.base_rates  # [k, d], [k]
    k = nu.shape[0]
    if away is not None:
        return nu[toward] - nu[away]
    others = (jnp.arange(k) != toward).astype(pi.dtype) * pi
    return nu[toward] - jnp.einsum("i,id->d", others / jnp.sum(others), nu)


def _check_class(name: str, value, k: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) < k:
        raise ValueError(f"{name}: expected a class code in 0..{k - 1}, got {value!r}.")
    return int(value)


def fair_steering(
    data,
    y=None,
    a=None,
    *,
    toward: int = 1,
    away: int | None = None,
    intervention: str = "affirmative",
    form: str = "affine",
    reference: int | None = None,
    coordinates: str = "template",
    shrinkage="ledoit_wolf",
    sample_weight=None,
    tol=None,
    max_iter: int = 300,
    solution: Solution | None = None,
) -> FairSteering:
    """A group-fair steering intervention from class×group statistics of hidden states.

    Args:
        data: the hidden states ``H [n, d]`` (then ``y``, ``a`` are required), their mergeable
            :class:`~jaxsteer.SuffStats`, or an already fitted :class:`~jaxsteer.GaussianFamily`.
            Data and statistics are turned into a family with ``shrinkage`` (as :func:`~jaxsteer.fit_family`).
        y: ``[n]`` integer class codes (e.g. 1 where the desired token follows, 0 otherwise).
        a: ``[n]`` integer group codes ``0..m−1``.
        toward: the class to steer towards (the desired output).
        away: the class to steer away from; ``None`` (default): the base-rate-weighted mean of every
            other class (for two classes, the other class).
        intervention, form: of :func:`~jaxsteer.nearest_ideal` (default ``affirmative``/``affine``,
            as :class:`~jaxsteer.Steerer`).
        reference: the group code ``affirmative`` keeps fixed and whose coordinates under ``θ̃``
            ``coordinates="reference"`` maps to; default the largest group (as
            :class:`~jaxsteer.Steerer`). With a precomputed ``solution`` it only selects the coordinates
            (default: the solution's reference).
        coordinates: ``"template"`` (default): the steered states are in template coordinates (for
            ``affirmative`` these are the reference group's own coordinates, so the reference group's
            states are not moved before ``α v`` is added); ``"reference"``: the template coordinates
            are mapped on to the reference group's coordinates under ``θ̃`` (``z ↦ A_r z + b_r``, and
            ``v ↦ A_r v``): the steered states of every group then follow group ``r``'s laws under ``θ̃``.
            For ``affirmative`` with its own reference this equals ``"template"``; it matters for
            ``intervention="all"``, whose template is gauge-fixed (reference class ``N(0, I)``) and far
            from what a frozen downstream network expects.
        shrinkage, sample_weight: estimation options (data or statistics input only).
        tol, max_iter: solver options of :func:`~jaxsteer.nearest_ideal`.
        solution: a precomputed :class:`~jaxsteer.Solution` of ``data``'s family (skips the solve;
            ``intervention``, ``form`` and ``reference`` are then taken from it).

    Returns:
        :class:`FairSteering` ``(map, direction, solution, family)``. Data and statistics input are
        estimated and solved in float64 (as the estimators do, whatever ``jax_enable_x64`` says) and
        come back as numpy float64 arrays (applied at JAX's default float32 they compute in float32);
        a family is solved in its own dtype.

    Guarantee: the Bayes-optimal readout of the steered distribution is exactly group-fair for
    every ``α`` (the steered class-conditional laws are the same in every group under ``θ̃``); a
    frozen readout trained on unsteered states is not covered (module docstring).

    Example:
        >>> import jax.numpy as jnp, numpy as np
        >>> from jaxsteer import fair_steering
        >>> from jaxsteer.steering_vectors import FairSteer
        >>> rng = np.random.default_rng(0)
        >>> y, a = rng.integers(0, 2, 2000), rng.integers(0, 2, 2000)   # y = 1: the desired token follows
        >>> H = rng.normal(size=(2000, 3)) + np.c_[y, a, y * a]         # hidden states [n, d]
        >>> fs = fair_steering(H, y, a)
        >>> fs.direction.shape, fs.apply(H, a, alpha=2.0).shape
        ((3,), (2000, 3))
        >>> steer = FairSteer.from_steering(fs, alpha=2.0, position="last")   # a Flax NNX module
        >>> steer(jnp.zeros((5, 7, 3)), a[:5]).shape       # [sequences, tokens, d]: the last token steered
        (5, 7, 3)
    """
    if intervention not in INTERVENTIONS:
        raise ValueError(f"intervention: unknown value {intervention!r}; choose one of {INTERVENTIONS}.")
    if form not in FORMS:
        raise ValueError(f"form: unknown value {form!r}; choose one of {FORMS}.")
    if coordinates not in COORDINATES:
        raise ValueError(f"coordinates: unknown value {coordinates!r}; choose one of {COORDINATES}.")
    if isinstance(data, GaussianFamily):
        return _from_family(data, toward, away, intervention, form, reference, coordinates, tol, max_iter, solution)
    with jax.enable_x64(True):
        if isinstance(data, SuffStats):
            family = to_family(data, shrinkage=shrinkage)
        else:
            if y is None or a is None:
                raise ValueError("y, a: hidden states need their class codes y and group codes a.")
            family = fit_family(jnp.asarray(np.asarray(data), jnp.float64), np.asarray(y), np.asarray(a),
                                shrinkage=shrinkage, sample_weight=sample_weight)
        result = _from_family(family, toward, away, intervention, form, reference, coordinates, tol, max_iter,
                              solution)
    return jax.tree.map(np.asarray, result)  # numpy float64: usable at any precision setting


def _from_family(family, toward, away, intervention, form, reference, coordinates, tol, max_iter, solution):
    if family.batch_shape:
        raise ValueError(f"data: expected one unbatched family, got batch shape {family.batch_shape}.")
    k, m = family.k, family.m
    toward = _check_class("toward", toward, k)
    if away is not None:
        away = _check_class("away", away, k)
        if away == toward:
            raise ValueError(f"away: must differ from toward ({toward}).")
    if solution is None:
        if reference is None:
            reference = int(np.argmax(np.asarray(family.group_marginals)))
        elif isinstance(reference, bool) or not isinstance(reference, (int, np.integer)) or not 0 <= reference < m:
            raise ValueError(f"reference: expected a group code in 0..{m - 1}, got {reference!r}.")
        solution = nearest_ideal(family, intervention=intervention, form=form, reference=int(reference), tol=tol,
                                 max_iter=max_iter)
    else:
        if not isinstance(solution, Solution):
            raise TypeError(f"solution: expected a jaxsteer.Solution, got {type(solution).__name__}.")
        if solution.target.means.shape != family.means.shape:
            raise ValueError("solution: its shapes do not match the family's; pass the solution of this family.")
        reference = solution.reference if reference is None else int(reference)
    group_map = _maps.group_maps(family, solution, "align")
    v = _template_direction(solution, toward, away)
    if coordinates == "reference":
        A_r, b_r = solution.maps.A[reference], solution.maps.b[reference]
        group_map = _maps.AffineMap(A_r, b_r, family.lognormal).compose(group_map)
        v = A_r @ v
    return FairSteering(map=group_map, direction=v, solution=solution, family=family)


# -- the Flax module ---------------------------------------------------------------------------------
# Flax loads on first use of FairSteer (module __getattr__ below), so that `import jaxsteer`, which
# imports fair_steering, stays free of Flax as it is for jaxsteer.nn.


def _build_fair_steer():
    from jaxsteer import nn as _nn

    class FairSteer(_nn.Steer):
        """``h ↦ A[a] h + b[a] + α v`` at one position or every position (a Flax NNX module).

        A subclass of :class:`jaxsteer.nn.Steer` (same ``A``, ``b``, ``d``, ``num_groups`` attributes and
        group-id handling), so :func:`jaxsteer.nn.insert` accepts it; build it with :meth:`from_steering`
        or the constructor (Steer's ``identity``/``from_*`` constructors do not apply: they have no ``v``).

        Args:
            A: ``[m, d, d]`` per-group linear parts; b: ``[m, d]`` offsets; v: ``[d]`` the shared direction.
            alpha: the default steering strength (a frozen variable; override per call).
            position: ``"last"`` (default: the last position of ``h [..., T, d]``, as when steering the
                next token) or ``"all"`` (every position; ``h [..., d]`` of any shape).
            dtype: parameter dtype (default: JAX's default float).

        Every parameter is a frozen :class:`jaxsteer.nn.SteerState` (untouched by ``nnx.grad`` and
        ``nnx.Optimizer(..., wrt=nnx.Param)``).

        Calling ``steer(h, a=None, alpha=None, index=None)``: ``a`` integer group codes, per sequence
        (shape ``h.shape[:-2]``, or a prefix of it) for a single position, per row or per sequence
        (a prefix of ``h.shape[:-1]``) for ``"all"``; when omitted, the ids of the enclosing
        :func:`jaxsteer.nn.groups` block. ``alpha`` overrides the stored strength (a scalar, or one value
        per sequence broadcasting against ``h.shape[:-2]``/``h.shape[:-1]``; traced under ``jit``).
        ``index`` (single-position mode only) steers position ``index[...]`` of each sequence instead of
        the last one (e.g. the last real token of right-padded batches). Positions that are not steered
        are returned unchanged.

        The guarantee of :func:`fair_steering` (equal per-class rates of the Bayes-optimal readout of the
        steered states in every group) does not cover a frozen downstream network.

        Inside a model, insert it after a block with ``jaxsteer.nn.insert(model, "blocks.1", steer)``
        and give the group ids of a batch with ``with jaxsteer.nn.groups(a): logits = model(tokens)``.

        Example:
            >>> import jax.numpy as jnp, numpy as np
            >>> import jaxsteer
            >>> from jaxsteer.steering_vectors import FairSteer
            >>> rng = np.random.default_rng(0)
            >>> y, a = rng.integers(0, 2, 2000), rng.integers(0, 2, 2000)
            >>> H = rng.normal(size=(2000, 3)) + np.c_[y, a, y * a]
            >>> steer = FairSteer.from_steering(jaxsteer.fair_steering(H, y, a), alpha=4.0)
            >>> h = jnp.zeros((2, 5, 3))                       # [sequences, positions, d]
            >>> with jaxsteer.nn.groups(jnp.array([0, 1])):   # one group id per sequence
            ...     out = steer(h)
            >>> bool(jnp.all(out[:, :-1] == 0)), bool(jnp.all(out[:, -1] != 0))   # only the last position moved
            (True, True)
        """

        def __init__(self, A, b, v, *, alpha=0.0, position: str = "last", dtype=None):
            if position not in POSITIONS:
                raise ValueError(f"position: unknown value {position!r}; choose one of {POSITIONS}.")
            dtype = jnp.zeros((), dtype).dtype if dtype is not None else jnp.zeros(()).dtype
            A, b, v = (jnp.asarray(np.asarray(x), dtype) for x in (A, b, v))
            if A.ndim != 3 or A.shape[1] != A.shape[2]:
                raise ValueError(f"A: expected per-group matrices [m, d, d], got shape {A.shape}.")
            m, d = A.shape[0], A.shape[1]
            if b.shape != (m, d):
                raise ValueError(f"b: expected shape ({m}, {d}), got {b.shape}.")
            if v.shape != (d,):
                raise ValueError(f"v: expected shape ({d},), got {v.shape}.")
            self.d, self.num_groups, self.position = d, m, position
            self.lognormal = False
            self.A = _nn.SteerState(A)
            self.b = _nn.SteerState(b)
            self.v = _nn.SteerState(v)
            self.alpha = _nn.SteerState(jnp.asarray(alpha, dtype))

        @classmethod
        def from_steering(cls, steering: FairSteering, *, alpha=0.0, position: str = "last", dtype=None) -> "FairSteer":
            """From a :class:`FairSteering` (its group map and direction)."""
            if not isinstance(steering, FairSteering):
                raise TypeError(f"steering: expected a FairSteering, got {type(steering).__name__}.")
            if steering.map.lognormal:
                raise ValueError("steering: a log-normal map cannot be followed by an additive vector; fit on log h.")
            return cls(steering.map.A, steering.map.b, steering.direction, alpha=alpha, position=position, dtype=dtype)

        @classmethod
        def _no_vector(cls, *args, **kwargs):
            raise TypeError("FairSteer: build it with FairSteer.from_steering(fair_steering(...)) or "
                            "FairSteer(A, b, v); Steer's identity/from_* constructors have no steering vector.")

        identity = from_maps = from_solution = from_steerer = _no_vector

        def _steer_rows(self, h, g, alpha):
            """``A[g] h + b[g] + α v`` on ``h [..., d]`` (``g``, ``alpha`` broadcast from the left)."""
            out = _nn._apply_group_affine(self.A[...], self.b[...], h, g, False)
            lead = out.shape[:-1]
            alpha = jnp.asarray(alpha, out.dtype)
            if alpha.ndim > len(lead) or alpha.shape != lead[: alpha.ndim]:
                raise ValueError(f"alpha: shape {alpha.shape} must be a prefix of the steered axes {lead}.")
            alpha = alpha.reshape(alpha.shape + (1,) * (len(lead) - alpha.ndim + 1))
            return out + alpha * self.v[...].astype(out.dtype)

        def __call__(self, h, a=None, alpha=None, index=None, *, groups=None):
            a = _validate.renamed(a, groups, new_name="a", old_name="groups", where="FairSteer",
                                  why="group ids are `a` throughout jaxsteer")
            h = jnp.asarray(h)
            g = _nn._context_groups() if a is None else a
            alpha = self.alpha[...] if alpha is None else alpha
            if self.position == "all":
                if index is not None:
                    raise ValueError("index: only a single-position FairSteer (position='last') takes an index.")
                return self._steer_rows(h, g, alpha)
            if h.ndim < 2 or h.shape[-1] != self.d:
                raise ValueError(f"h: expected a sequence of hidden states [..., T, {self.d}], got shape {h.shape}.")
            T = h.shape[-2]
            if index is None:
                index = jnp.full(h.shape[:-2], T - 1, jnp.int32)
            index = jnp.broadcast_to(jnp.asarray(index, jnp.int32), h.shape[:-2])
            # Gather the state at the steered position of every sequence, steer it, and put it back.
            picked = jnp.take_along_axis(h, index[..., None, None], axis=-2)[..., 0, :]  # [..., d]
            steered = self._steer_rows(picked, g, alpha).astype(h.dtype)
            at = (jnp.arange(T) == index[..., None])[..., None]  # [..., T, 1]
            return jnp.where(at, steered[..., None, :], h)

        def __repr__(self) -> str:
            return f"FairSteer(d={self.d}, num_groups={self.num_groups}, position={self.position!r})"

    FairSteer.__qualname__ = "FairSteer"
    return FairSteer


def __getattr__(name):
    if name == "FairSteer":
        cls = _build_fair_steer()
        globals()["FairSteer"] = cls
        return cls
    raise AttributeError(f"module 'jaxsteer.steering_vectors' has no attribute {name!r}")
