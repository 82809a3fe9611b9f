"""Steering maps: turn a nearest-ideal :class:`~jaxsteer.Solution` into maps on data (MATH §4).

Which map to use depends on what is known about a point:

* **subgroup maps** (:func:`subgroup_maps`) need the label ``y`` and the group ``a``: the W2-optimal
  (Monge) map from ``N(μ_ia, Σ_ia)`` to the target's ``N(μ̃_ia, Σ̃_ia)``. Pushing the training data
  through them (and weighting it with :func:`sample_weights`) turns a sample of ``θ`` into a sample of
  the ideal ``θ̃``: the pre-processing protocol.
* **group maps** need only ``a`` (for representations at inference time):

  - ``align`` (:func:`align_maps`): ``x ↦ A_a⁻¹(x − b_a)`` puts every group into the template's
    coordinates, where the ideal family's class-conditional laws are the same in every group;
  - ``moment`` (:func:`moment_maps`): the W2 map between the group's class mixture under ``θ`` and
    under ``θ̃`` (first two moments);
  - ``posterior`` (:class:`PosteriorMap`): ``Σ_i P_θ(Y=i | x, a) T_ia(x)``, the subgroup maps averaged
    with the posterior class probabilities (not affine).

Every map is a pytree. :class:`AffineMap` is invertible and composable; a log-normal family's maps
act as ``x ↦ exp(T(log x))``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxsteer import _linalg, _validate
from jaxsteer.family import GaussianFamily

__all__ = [
    "MAP_KINDS",
    "AffineMap",
    "PosteriorMap",
    "w2_map",
    "subgroup_maps",
    "align_maps",
    "moment_maps",
    "posterior_map",
    "group_maps",
    "sample_weights",
]

#: The label-free group map kinds.
MAP_KINDS = ("align", "moment", "posterior")

# Up to this many maps, applying per-row maps evaluates every map on every row with one matrix
# product (BLAS-3, n·G·d memory) and selects; above it, rows gather their own matrix in chunks
# (n·d² work, chunk·d² memory) so that many maps (e.g. k·m subgroup maps) stay cheap.
_DENSE_SELECT_MAX = 8
_GATHER_CHUNK = 4096


def _code_names(n_axes: int) -> list[tuple[str, str]]:
    """Argument names and kinds of per-row codes: ``a`` (groups), ``y, a`` (class×group), else ``codes[j]``."""
    if n_axes == 1:
        return [("a", "group")]
    if n_axes == 2:
        return [("y", "class"), ("a", "group")]
    return [(f"codes[{j}]", "map") for j in range(n_axes)]


def _codes_to_index(codes, shape: tuple[int, ...], n_rows: int | None):
    """Ravel per-row integer codes indexing the map axes ``shape`` into one flat index."""
    idx = None
    for (name, what), c, size in zip(_code_names(len(shape)), codes, shape):
        c = _validate.jax_codes(c, name, what, n=n_rows, size=size, rows_of="x")
        idx = c if idx is None else idx * size + c
    return idx


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class AffineMap:
    """A batch of affine maps ``x ↦ A x + b`` (``x ↦ exp(A log x + b)`` when ``lognormal``).

    Attributes:
        A: ``[..., d, d]`` linear parts (invertible).
        b: ``[..., d]`` offsets.
        lognormal: static flag; the map acts on ``log x`` and returns ``exp`` of the result.

    The leading axes index maps, e.g. ``[m]`` (one per group) or ``[k, m]`` (one per class and
    group). :meth:`apply` either broadcasts them against ``x`` or, given per-row codes, applies to
    each row the map its codes select.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxsteer import AffineMap
        >>> f = AffineMap(A=jnp.stack([jnp.eye(2), 2 * jnp.eye(2)]), b=jnp.zeros((2, 2)))   # maps [2]
        >>> x, a = jnp.ones((3, 2)), jnp.array([0, 1, 1])
        >>> f.apply(x, a).tolist()                  # rows 1, 2 go through map 1: doubled
        [[1.0, 1.0], [2.0, 2.0], [2.0, 2.0]]
        >>> f.inverse().apply(f.apply(x, a), a).tolist()
        [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    """

    A: jax.Array
    b: jax.Array
    lognormal: bool = dataclasses.field(default=False, metadata=dict(static=True))

    def __post_init__(self):
        A, b = self.A, self.b
        if not isinstance(A, jax.core.Tracer) and hasattr(A, "shape"):
            if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
                raise ValueError(f"A: expected square matrices [..., d, d], got shape {A.shape}.")
            if getattr(b, "shape", None) is not None and b.shape[-1:] != A.shape[-1:]:
                raise ValueError(f"b: expected shape [..., {A.shape[-1]}] to match A {A.shape}, got {b.shape}.")

    # -- construction -----------------------------------------------------------------------------

    @classmethod
    def identity(cls, d: int, batch_shape: tuple[int, ...] = (), dtype=None, lognormal: bool = False):
        """The identity map(s), ``A = I``, ``b = 0``, with the given batch shape.

        Example:
            >>> from jaxsteer import AffineMap
            >>> AffineMap.identity(3, (2,)).A.shape
            (2, 3, 3)
        """
        dtype = dtype or jnp.result_type(float)
        A = jnp.broadcast_to(jnp.eye(d, dtype=dtype), tuple(batch_shape) + (d, d))
        return cls(A=A, b=jnp.zeros(tuple(batch_shape) + (d,), dtype), lognormal=lognormal)

    # -- shape --------------------------------------------------------------------------------------

    @property
    def d(self) -> int:
        return self.A.shape[-1]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """The map axes, e.g. ``(m,)`` or ``(k, m)``."""
        return tuple(self.A.shape[:-2])

    def __getitem__(self, idx) -> "AffineMap":
        """Index the map axes: ``maps[a]``, ``subgroup[i]`` (all groups of class ``i``)."""
        return AffineMap(self.A[idx], self.b[idx], self.lognormal)

    # -- action -------------------------------------------------------------------------------------

    def apply(self, x, *codes) -> jax.Array:
        """Apply the maps to points.

        Args:
            x: ``[..., d]`` points (strictly positive for a log-normal map).
            *codes: optional integer arrays ``[n]`` (``x`` then ``[n, d]``), one per leading map
                axis: ``apply(x, a)`` for maps ``[m]``, ``apply(x, y, a)`` for maps ``[k, m]``; row
                ``j`` goes through map ``[codes[0][j], codes[1][j], ...]``. Without codes the map
                axes broadcast against the leading axes of ``x``.

        Returns:
            The mapped points, the shape of ``x`` (or the broadcast shape without codes).

        Example:
            >>> import jax.numpy as jnp
            >>> from jaxsteer import AffineMap
            >>> f = AffineMap(A=jnp.stack([jnp.eye(2), 2 * jnp.eye(2)]), b=jnp.array([[0., 0.], [1., -1.]]))
            >>> X, a = jnp.array([[1., 2.], [1., 2.]]), jnp.array([0, 1])
            >>> f.apply(X, a).tolist()          # X [n, d], a [n] → [n, d]: row j through map a[j]
            [[1.0, 2.0], [3.0, 3.0]]
            >>> f.apply(X[0]).tolist()          # no codes: the map axis broadcasts, [2, d]
            [[1.0, 2.0], [3.0, 3.0]]
        """
        x = jnp.asarray(x)
        if x.shape[-1:] != (self.d,):
            raise ValueError(f"x: expected points [..., {self.d}], got shape {x.shape}.")
        z = jnp.log(x) if self.lognormal else x
        if not codes:
            out = jnp.einsum("...ij,...j->...i", self.A, z) + self.b
        else:
            nc = len(codes)
            if len(self.batch_shape) != nc:
                raise ValueError(
                    f"codes: got {nc} code array(s) for maps with axes {self.batch_shape}; pass one "
                    f"integer code array per map axis (e.g. apply(x, a) for [m] maps, apply(x, y, a) "
                    f"for [k, m] maps)."
                )
            if z.ndim != 2:
                raise ValueError(f"x: with per-row codes expected points [n, d], got shape {x.shape}.")
            G = int(np.prod(self.batch_shape))
            idx = _codes_to_index(codes, self.batch_shape, z.shape[0])
            A = self.A.reshape((G, self.d, self.d))
            b = self.b.reshape((G, self.d))
            out = apply_per_row(A, b, z, idx)
        return jnp.exp(out) if self.lognormal else out

    __call__ = apply

    def inverse(self) -> "AffineMap":
        """The inverse maps ``x ↦ A⁻¹(x − b)`` (same batch shape).

        Example:
            >>> import jax.numpy as jnp
            >>> from jaxsteer import AffineMap
            >>> f = AffineMap(A=2 * jnp.eye(2), b=jnp.array([1., 0.]))
            >>> g = f.inverse().compose(f)          # the identity
            >>> g.A.tolist(), g.b.tolist()
            ([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0])
        """
        Ainv = jnp.linalg.inv(self.A)
        return AffineMap(Ainv, -jnp.einsum("...ij,...j->...i", Ainv, self.b), self.lognormal)

    def compose(self, inner: "AffineMap") -> "AffineMap":
        """``self ∘ inner``: the map ``x ↦ self(inner(x))`` (batch axes broadcast).

        Example:
            >>> import jax.numpy as jnp
            >>> from jaxsteer import AffineMap
            >>> f = AffineMap(A=2 * jnp.eye(2), b=jnp.array([1., 0.]))
            >>> g = AffineMap(A=jnp.array([[0., 1.], [1., 0.]]), b=jnp.zeros(2))    # swap coordinates
            >>> x = jnp.array([1., 2.])
            >>> g.compose(f).apply(x).tolist(), g.apply(f.apply(x)).tolist()
            ([4.0, 3.0], [4.0, 3.0])
        """
        if not isinstance(inner, AffineMap):
            raise TypeError(f"inner: expected an AffineMap, got {type(inner).__name__}.")
        if inner.lognormal != self.lognormal:
            raise ValueError("inner: cannot compose a log-normal map with a Gaussian one (lognormal flags differ).")
        if inner.d != self.d:
            raise ValueError(f"inner: dimension {inner.d} does not match {self.d}.")
        A = self.A @ inner.A
        b = jnp.einsum("...ij,...j->...i", self.A, inner.b) + self.b
        return AffineMap(A, b, self.lognormal)

    def lift(self, basis, center) -> "AffineMap":
        """The maps, fitted on subspace coordinates ``z = Uᵀ(x − c)``, as maps of the full ``x``.

        ``x ↦ x + U((A − I) Uᵀ(x − c) + b)``: the coordinates in the span of ``U`` are steered exactly
        as ``z ↦ A z + b`` steers them, and the orthogonal complement is left unchanged. Use it to put
        a map fitted on the top principal components of a representation back into the network (e.g.
        as a :class:`jaxsteer.nn.Steer` on the full width).

        Args:
            basis: ``U [D, d]`` with orthonormal columns (``d = self.d``), e.g. principal axes.
            center: ``c [D]`` the centre of the coordinates (e.g. the mean the PCA subtracted).

        Returns:
            An :class:`AffineMap` on ``R^D`` with the same batch shape.

        Raises:
            ValueError: shapes that do not match, columns of ``basis`` not orthonormal, a log-normal map.

        Example:
            >>> import jax.numpy as jnp, numpy as np
            >>> from jaxsteer import GaussianFamily, nearest_ideal
            >>> fam = GaussianFamily.univariate(priors=[[.3, .2], [.2, .3]], means=[[0., 1.], [2., 2.5]],
            ...                                 stds=[[1., 1.], [1., 2.]])     # k = 2 classes, m = 2 groups, d = 1
            >>> sol = nearest_ideal(fam, form="affine")
            >>> from jaxsteer.maps import moment_maps
            >>> small = moment_maps(fam, sol)           # group maps of the coordinate z = Uᵀ(x − c), d = 1
            >>> U, c = jnp.array([[0.6], [0.8], [0.0]]), jnp.array([1., 0., 2.])    # U [D, d] = [3, 1]
            >>> full = small.lift(U, c)                 # the same maps acting on x in R^3
            >>> full.batch_shape, full.d
            ((2,), 3)
            >>> X, a = jnp.array([[1., 1., 1.], [2., 0., -1.]]), jnp.array([0, 1])
            >>> Z = (X - c) @ U
            >>> np.allclose(full.apply(X, a), X + (small.apply(Z, a) - Z) @ U.T, atol=1e-5)
            True
            >>> full.apply(X, a)[:, 2].tolist()         # the orthogonal complement is left unchanged
            [1.0, -1.0]
        """
        if self.lognormal:
            raise ValueError("lift: a log-normal map acts on log x coordinates and cannot be lifted linearly; "
                             "lift the Gaussian map fitted on log x instead.")
        U = jnp.asarray(basis, self.A.dtype)
        c = jnp.asarray(center, self.A.dtype)
        d = self.d
        if U.ndim != 2 or U.shape[1] != d:
            raise ValueError(f"basis: expected shape [D, {d}] (one column per map coordinate), got {U.shape}.")
        if U.shape[0] < d:
            raise ValueError(f"basis: {U.shape[0]} rows cannot hold {d} orthonormal columns.")
        if c.shape != (U.shape[0],):
            raise ValueError(f"center: expected shape [{U.shape[0]}] to match basis {U.shape}, got {c.shape}.")
        if not isinstance(U, jax.core.Tracer):
            err = float(jnp.max(jnp.abs(U.T @ U - jnp.eye(d, dtype=U.dtype))))
            if not err <= 1e3 * float(jnp.finfo(U.dtype).eps) * max(U.shape[0], 1):
                raise ValueError(f"basis: columns are not orthonormal (max |UᵀU − I| = {err:.2e}); "
                                 "orthonormalise them first, e.g. with jnp.linalg.qr(basis)[0].")
        D_ = self.A - jnp.eye(d, dtype=self.A.dtype)
        UDUt = jnp.einsum("ip,...pq,jq->...ij", U, D_, U)
        A = jnp.eye(U.shape[0], dtype=self.A.dtype) + UDUt
        b = jnp.einsum("ip,...p->...i", U, self.b) - jnp.einsum("...ij,j->...i", UDUt, c)
        return AffineMap(A, b, False)

    def __repr__(self) -> str:
        kind = "log-normal " if self.lognormal else ""
        return f"AffineMap({kind}d={self.d}, batch_shape={self.batch_shape}, dtype={self.A.dtype})"


def apply_per_row(A, b, z, idx):
    """Row ``j`` of ``z [n, d]`` through map ``idx[j]`` of ``A [G, d, d]``, ``b [G, d]`` (internal:
    :class:`AffineMap` and :class:`jaxsteer.nn.Steer` both apply their per-row maps with it)."""
    G, n = A.shape[0], z.shape[0]
    if G <= _DENSE_SELECT_MAX:
        allmaps = jnp.einsum("gij,nj->ngi", A, z) + b  # [n, G, d]
        return jnp.take_along_axis(allmaps, idx[:, None, None], axis=1)[:, 0, :]

    def row(args):  # lax.map with batch_size vmaps this over chunks of rows
        zj, ij = args
        return A[ij] @ zj + b[ij]

    return jax.lax.map(row, (z, idx), batch_size=min(_GATHER_CHUNK, max(n, 1)))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PosteriorMap:
    """``x ↦ Σ_i P_θ(Y=i | x, a) T_ia(x)``: the subgroup maps averaged by posterior class probabilities.

    Needs only the group ``a``. Not affine and in general not invertible. Build it with
    :func:`posterior_map`.

    Attributes:
        source: the (unbatched) fitted family ``θ`` giving the posteriors.
        subgroup: the subgroup :class:`AffineMap` ``[k, m]``.
    """

    source: GaussianFamily
    subgroup: AffineMap

    @property
    def d(self) -> int:
        return self.subgroup.d

    @property
    def lognormal(self) -> bool:
        return self.subgroup.lognormal

    def posteriors(self, x, a) -> jax.Array:
        """``P_θ(Y=i | x, a)`` for ``x [n, d]``, ``a [n]`` → ``[n, k]``."""
        x = jnp.asarray(x)
        a = _codes_to_index((a,), (self.source.m,), x.shape[0])
        logf = self.source.log_density(x)  # [n, k, m]
        logq = jnp.log(self.source.priors)  # [k, m]
        joint = jnp.take_along_axis(logf + logq, a[:, None, None], axis=2)[..., 0]  # [n, k]
        return jax.nn.softmax(joint, axis=-1)

    def apply(self, x, a) -> jax.Array:
        """Steer points ``x [n, d]`` of groups ``a [n]``; returns ``[n, d]``.

        Example:
            >>> import jax
            >>> from jaxsteer import GaussianFamily, nearest_ideal
            >>> fam = GaussianFamily.univariate(priors=[[.3, .2], [.2, .3]], means=[[0., 1.], [2., 2.5]],
            ...                                 stds=[[1., 1.], [1., 2.]])     # k = 2 classes, m = 2 groups, d = 1
            >>> sol = nearest_ideal(fam, form="affine")
            >>> from jaxsteer.maps import posterior_map
            >>> X, y, a = fam.sample(jax.random.PRNGKey(0), 500)
            >>> posterior_map(fam, sol).apply(X, a).shape
            (500, 1)
        """
        x = jnp.asarray(x)
        if x.ndim != 2 or x.shape[-1] != self.d:
            raise ValueError(f"x: expected points [n, {self.d}], got shape {x.shape}.")
        post = self.posteriors(x, a)
        z = jnp.log(x) if self.lognormal else x
        lin = AffineMap(self.subgroup.A, self.subgroup.b)  # act on z directly
        k = self.source.k
        out = sum(post[:, i, None] * lin[i].apply(z, a) for i in range(k))
        return jnp.exp(out) if self.lognormal else out

    __call__ = apply

    def inverse(self):
        raise NotImplementedError(
            "PosteriorMap is not invertible in closed form (it is not affine); use map='align' or "
            "'moment' if you need inverse_transform."
        )

    def __repr__(self) -> str:
        return f"PosteriorMap(k={self.source.k}, m={self.source.m}, d={self.d})"


# -- constructors ------------------------------------------------------------------------------------


def w2_map(mean0, cov0, mean1, cov1, *, lognormal: bool = False) -> AffineMap:
    """The W2-optimal (Monge) map from ``N(mean0, cov0)`` to ``N(mean1, cov1)``.

    ``T(x) = mean1 + M (x − mean0)`` with ``M = S^{-1/2} (S^{1/2} Σ₁ S^{1/2})^{1/2} S^{-1/2}``,
    ``S = cov0`` (symmetric positive definite; eigh-based square roots).

    Args:
        mean0, mean1: ``[..., d]``; cov0, cov1: ``[..., d, d]`` SPD; batch axes broadcast.
        lognormal: mark the map log-normal (moments are then those of ``log x``).

    Example:
        >>> import jax.numpy as jnp, numpy as np
        >>> from jaxsteer.maps import w2_map
        >>> T = w2_map(jnp.zeros(2), jnp.eye(2), jnp.ones(2), 4 * jnp.eye(2))   # N(0, I) → N(1, 4 I)
        >>> np.allclose(T.A, 2 * np.eye(2)), T.b.tolist()                     # x ↦ 2 x + 1
        (True, [1.0, 1.0])
    """
    mean0, mean1 = jnp.asarray(mean0), jnp.asarray(mean1)
    root, inv_root = _linalg.psd_sqrt_and_inv_sqrt(cov0)
    middle = _linalg.psd_sqrt(root @ jnp.asarray(cov1) @ root)
    M = _linalg.sym(inv_root @ middle @ inv_root)
    b = mean1 - jnp.einsum("...ij,...j->...i", M, mean0)
    return AffineMap(M, b, lognormal)


def _check_pair(source: GaussianFamily, target: GaussianFamily) -> None:
    if not isinstance(source, GaussianFamily):
        raise TypeError(f"source: expected a GaussianFamily, got {type(source).__name__}.")
    if not isinstance(target, GaussianFamily):
        raise TypeError(f"target: expected a GaussianFamily (e.g. solution.target), got {type(target).__name__}.")
    if source.means.shape[-3:] != target.means.shape[-3:]:
        raise ValueError(
            f"target: its (k, m, d) = {target.means.shape[-3:]} differs from the source family's "
            f"{source.means.shape[-3:]}; pass the family the solution was computed from."
        )
    if source.lognormal != target.lognormal:
        raise ValueError("target: lognormal flag differs from the source family's.")


def _target_of(solution_or_target) -> GaussianFamily:
    return getattr(solution_or_target, "target", solution_or_target)


def subgroup_maps(source: GaussianFamily, target) -> AffineMap:
    """Per-subgroup W2 maps ``T_ia`` from ``θ`` to ``θ̃`` (need ``y`` and ``a``).

    Args:
        source: the family ``θ`` the data follow.
        target: the ideal family ``θ̃`` or a :class:`~jaxsteer.Solution` (its ``target`` is used).

    Returns:
        :class:`AffineMap` with batch shape ``[..., k, m]``; ``maps.apply(X, y, a)`` steers labelled
        data. Subgroup ``(i, a)``'s mean and covariance are carried exactly onto the target's.

    Example:
        >>> import jax, numpy as np
        >>> from jaxsteer import GaussianFamily, nearest_ideal
        >>> fam = GaussianFamily.univariate(priors=[[.3, .2], [.2, .3]], means=[[0., 1.], [2., 2.5]],
        ...                                 stds=[[1., 1.], [1., 2.]])     # k = 2 classes, m = 2 groups, d = 1
        >>> sol = nearest_ideal(fam, form="affine")
        >>> from jaxsteer.maps import subgroup_maps
        >>> T = subgroup_maps(fam, sol)
        >>> T.batch_shape
        (2, 2)
        >>> X, y, a = fam.sample(jax.random.PRNGKey(0), 500)
        >>> T.apply(X, y, a).shape
        (500, 1)
        >>> np.allclose(T[1, 1].apply(fam.means[1, 1]), sol.target.means[1, 1], atol=1e-5)  # mean carried over
        True
    """
    target = _target_of(target)
    _check_pair(source, target)
    return w2_map(source.means, source.covs, target.means, target.covs, lognormal=source.lognormal)


def align_maps(solution) -> AffineMap:
    """``x ↦ A_a⁻¹(x − b_a)``: every group into the ideal family's template coordinates.

    Under ``θ̃`` the aligned class-conditional laws are ``N(ν_i, Γ_i)`` in every group, so one
    classifier serves all groups. For ``affirmative`` the template coordinates are the reference
    group's own (its map is the identity).

    Args:
        solution: a :class:`~jaxsteer.Solution`.

    Returns:
        :class:`AffineMap` ``[..., m]``; apply with ``maps.apply(X, a)``.

    Example:
        >>> import jax, numpy as np
        >>> from jaxsteer import GaussianFamily, nearest_ideal
        >>> fam = GaussianFamily.univariate(priors=[[.3, .2], [.2, .3]], means=[[0., 1.], [2., 2.5]],
        ...                                 stds=[[1., 1.], [1., 2.]])     # k = 2 classes, m = 2 groups, d = 1
        >>> sol = nearest_ideal(fam, form="affine")
        >>> from jaxsteer.maps import align_maps
        >>> f = align_maps(sol)                  # one map per group
        >>> f.batch_shape, np.allclose(f.A[0], 1.0) and np.allclose(f.b[0], 0.0)   # the reference group's is the identity
        ((2,), True)
        >>> X, y, a = fam.sample(jax.random.PRNGKey(0), 500)
        >>> f.apply(X, a).shape
        (500, 1)
    """
    maps = solution.maps
    return AffineMap(maps.A, maps.b, solution.target.lognormal).inverse()


def moment_maps(source: GaussianFamily, target) -> AffineMap:
    """W2 map between each group's class mixture under ``θ`` and under ``θ̃`` (first two moments).

    Args:
        source: the family ``θ``.
        target: ``θ̃`` or a :class:`~jaxsteer.Solution`.

    Returns:
        :class:`AffineMap` ``[..., m]``; apply with ``maps.apply(X, a)``.

    Example:
        >>> import jax, numpy as np
        >>> from jaxsteer import GaussianFamily, nearest_ideal
        >>> fam = GaussianFamily.univariate(priors=[[.3, .2], [.2, .3]], means=[[0., 1.], [2., 2.5]],
        ...                                 stds=[[1., 1.], [1., 2.]])     # k = 2 classes, m = 2 groups, d = 1
        >>> sol = nearest_ideal(fam, form="affine")
        >>> from jaxsteer.maps import moment_maps
        >>> f = moment_maps(fam, sol)
        >>> X, y, a = fam.sample(jax.random.PRNGKey(0), 500)
        >>> f.apply(X, a).shape
        (500, 1)
        >>> mean, _ = fam.group_moments(); target_mean, _ = sol.target.group_moments()
        >>> np.allclose(f.apply(mean), target_mean, atol=1e-5)    # each group's mean onto the target's
        True
    """
    target = _target_of(target)
    _check_pair(source, target)
    m0, S0 = source.group_moments()
    m1, S1 = target.group_moments()
    return w2_map(m0, S0, m1, S1, lognormal=source.lognormal)


def posterior_map(source: GaussianFamily, target) -> PosteriorMap:
    """``x ↦ Σ_i P_θ(Y=i | x, a) T_ia(x)`` (needs only ``a``).

    Args:
        source: the unbatched family ``θ``.
        target: ``θ̃`` or a :class:`~jaxsteer.Solution`.

    Example:
        >>> from jaxsteer import GaussianFamily, nearest_ideal
        >>> fam = GaussianFamily.univariate(priors=[[.3, .2], [.2, .3]], means=[[0., 1.], [2., 2.5]],
        ...                                 stds=[[1., 1.], [1., 2.]])     # k = 2 classes, m = 2 groups, d = 1
        >>> sol = nearest_ideal(fam, form="affine")
        >>> from jaxsteer.maps import posterior_map
        >>> posterior_map(fam, sol)
        PosteriorMap(k=2, m=2, d=1)
    """
    target = _target_of(target)
    _check_pair(source, target)
    if source.batch_shape:
        raise ValueError("source: posterior_map needs one unbatched family; index the batch first.")
    return PosteriorMap(source, subgroup_maps(source, target))


def group_maps(source: GaussianFamily, solution, map: str | None = None, *, kind: str | None = None):
    """The label-free group map ``map`` (``"align"``, the default, ``"moment"`` or ``"posterior"``),
    named as in ``Steerer(map=)`` (``kind=`` is its deprecated alias).

    Example:
        >>> import jax
        >>> from jaxsteer import GaussianFamily, nearest_ideal
        >>> fam = GaussianFamily.univariate(priors=[[.3, .2], [.2, .3]], means=[[0., 1.], [2., 2.5]],
        ...                                 stds=[[1., 1.], [1., 2.]])     # k = 2 classes, m = 2 groups, d = 1
        >>> sol = nearest_ideal(fam, form="affine")
        >>> from jaxsteer.maps import group_maps
        >>> f = group_maps(fam, sol, "moment")
        >>> f.batch_shape
        (2,)
        >>> X, y, a = fam.sample(jax.random.PRNGKey(0), 500)
        >>> f.apply(X, a).shape
        (500, 1)
    """
    kind = _validate.renamed(map, kind, new_name="map", old_name="kind", where="group_maps",
                             why="as in Steerer(map=)")
    kind = "align" if kind is None else kind
    if kind == "align":
        if not hasattr(solution, "maps"):
            raise TypeError("solution: map 'align' needs a Solution (with its maps), not a bare family.")
        return align_maps(solution)
    if kind == "moment":
        return moment_maps(source, solution)
    if kind == "posterior":
        return posterior_map(source, solution)
    raise ValueError(f"map: unknown group map {kind!r}; choose one of {MAP_KINDS}.")


def sample_weights(solution_or_weights, y, a) -> jax.Array:
    """Per-row weights ``q̃[y, a] / q[y, a]`` that realise the prior part of the target on data.

    Args:
        solution_or_weights: a :class:`~jaxsteer.Solution` (its ``weights [k, m]``) or a
            ``[k, m]`` array.
        y, a: ``[n]`` class and group codes.

    Returns:
        ``[n]`` weights (mean about 1 on data drawn from ``θ``).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxsteer import GaussianFamily, nearest_ideal
        >>> fam = GaussianFamily.univariate(priors=[[.3, .2], [.2, .3]], means=[[0., 1.], [2., 2.5]],
        ...                                 stds=[[1., 1.], [1., 2.]])     # k = 2 classes, m = 2 groups, d = 1
        >>> sol = nearest_ideal(fam, form="affine")
        >>> from jaxsteer.maps import sample_weights
        >>> y, a = jnp.array([0, 1, 1]), jnp.array([0, 0, 1])
        >>> w = sample_weights(sol, y, a)                  # sol.weights[y, a], one per row
        >>> [round(v, 3) for v in w.tolist()]
        [1.0, 1.0, 0.667]
    """
    w = jnp.asarray(getattr(solution_or_weights, "weights", solution_or_weights))
    if w.ndim != 2:
        raise ValueError(f"solution_or_weights: expected weights [k, m] (unbatched), got shape {w.shape}.")
    idx = _codes_to_index((y, a), w.shape, None)
    return w.reshape(-1)[idx]
