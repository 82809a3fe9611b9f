"""Steering maps as Flax modules: per-group affine layers, model surgery, and a Linen hook.

:class:`Steer` is a Flax NNX module holding one affine map per group, ``h ↦ A[a] h + b[a]``
(``h ↦ exp(A[a] log h + b[a])`` for log-normal maps), applied to hidden states ``h [..., d]`` with
integer group ids ``a [...]``. Build it from a fitted :class:`~jaxsteer.Steerer`, from a
:class:`~jaxsteer.Solution` (``align`` or ``moment`` group maps, MATH §4), from any
:class:`~jaxsteer.AffineMap` ``[m]``, or as the identity. Its parameters are either

* **frozen**: stored in :class:`SteerState` variables, which ``nnx.grad`` (default ``wrt``) and
  ``nnx.Optimizer(model, tx, wrt=nnx.Param)`` never touch, so a fitted steering map stays exactly as
  fitted while the rest of the model trains; or
* **trainable**: stored in ``nnx.Param`` (``trainable=True``), e.g. initialised from a solution and
  fine-tuned end to end.

**Where the group ids come from.** Called directly, a :class:`Steer` takes them as an argument,
``steer(h, a)``. A :class:`Steer` inserted into an existing model by :func:`insert` cannot receive an
argument through the model's own code, so it reads them from the :func:`groups` context::

    steered = jaxsteer.nn.insert(model, "encoder.layers.2", steer)   # model surgery, in place

    @nnx.jit
    def train_step(model, optimizer, x, y, a):
        def loss_fn(model):
            with jaxsteer.nn.groups(a):        # every Steer in the model uses these ids
                logits = model(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    jaxsteer.nn.remove(model, "encoder.layers.2")   # the original model, exactly

The context is a thread-local stack and is *trace-safe* when entered inside the transformed function
(as above, where ``a`` is an argument of the jitted step and hence a tracer of its trace). Entering
it *outside* a ``jit`` with a concrete array would bake that array into the compiled function as a
constant, silently reused on later calls with other group ids; :class:`Steer` detects this case and
raises instead. Group ids broadcast against the leading axes of ``h`` from the left, so per-example
ids ``[B]`` serve every token of ``h [B, T, d]``.

**Avoiding recompilation.** ``nnx.jit`` caches the compiled step on the *graph definition* of its
module arguments, and an ``nnx.Optimizer``'s graph definition includes its optax transformation.
Two calls of ``optax.adam(1e-3)`` build two unequal transformations (new closures), so a training
loop that builds a fresh ``nnx.Optimizer(model, optax.adam(lr), wrt=...)`` per model, per phase or
per sweep point recompiles its step each time. Build each transformation once and reuse it::

    tx = optax.adam(1e-3)                        # once
    for model in models:
        opt = nnx.Optimizer(model, tx, wrt=nnx.Param)   # same tx: the compiled step is reused

Inserting or removing a :class:`Steer` changes the model's graph and compiles once more (expected);
switching a Steer between frozen and trainable does too. Group ids passed as arrays of a fixed shape
never recompile; ``benchmarks/experiments/flax_overhead.py`` counts traces to check it.

Linen models: :func:`linen_steering` applies the same maps after a named Linen submodule through
``flax.linen.intercept_methods``, without touching the model's code. Inside Linen code, a trainable
:class:`Steer` can also be used as a submodule through ``flax.nnx.bridge.ToLinen(Steer, args=(d, m))``.
"""

from __future__ import annotations

import contextlib
import threading

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsteer import _validate
from jaxsteer import maps as _maps

__all__ = [
    "SteerState",
    "Steer",
    "Steered",
    "groups",
    "current_groups",
    "insert",
    "remove",
    "linen_steering",
]

class SteerState(nnx.Variable):
    """A frozen steering parameter: an ``nnx.Variable`` that is not an ``nnx.Param``.

    ``nnx.grad`` (which differentiates ``nnx.Param`` by default) and
    ``nnx.Optimizer(model, tx, wrt=nnx.Param)`` skip it. Its Linen collection name (through
    ``flax.nnx.bridge``) is ``"steer_state"``.
    """


try:  # Linen collection name for the bridge (flax >= 0.10); harmless if already registered.
    nnx.register_variable_name("steer_state", SteerState)
except (AttributeError, ValueError):  # pragma: no cover - depends on the flax version
    pass


# -- group ids -------------------------------------------------------------------------------------

_LOCAL = threading.local()


def _stack() -> list:
    if not hasattr(_LOCAL, "stack"):
        _LOCAL.stack = []
    return _LOCAL.stack


def _staging() -> bool:
    """Whether operations are being staged out into a compiled computation (``jit``, ``scan``, ...)."""
    return isinstance(jax.lax.add(jnp.int32(0), jnp.int32(0)), jax.core.Tracer)


def _as_codes(a, name: str = "a", size: int | None = None) -> jax.Array:
    return _validate.jax_codes(a, name, "group", size=size, size_arg=None, ndim=None)


@contextlib.contextmanager
def groups(a):
    """Set the group ids used by every :class:`Steer` called without explicit ids in this block.

    Args:
        a: integer group codes ``0..m−1``, shaped like the leading axes of the hidden states the
            steers see (or a prefix of them, e.g. per-example ids ``[B]`` for ``h [B, T, d]``).

    Enter the block *inside* the function you ``jit``/``grad``, with ``a`` one of its arguments.
    Blocks nest (the innermost wins) and are thread-local.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> import jaxsteer.nn
        >>> class MLP(nnx.Module):
        ...     def __init__(self, rngs):
        ...         self.hidden = nnx.Linear(3, 4, rngs=rngs)
        ...         self.out = nnx.Linear(4, 2, rngs=rngs)
        ...     def __call__(self, x):
        ...         return self.out(nnx.relu(self.hidden(x)))
        >>> model = MLP(nnx.Rngs(0))
        >>> x, a = jnp.ones((5, 3)), jnp.array([0, 1, 1, 0, 1])        # inputs and their group ids
        >>> _ = jaxsteer.nn.insert(model, "hidden", jaxsteer.nn.Steer.identity(4, 2))
        >>> with jaxsteer.nn.groups(a):
        ...     logits = model(x)      # any Steer inserted in the model steers row i with map a[i]
        >>> logits.shape
        (5, 2)
        >>> @nnx.jit
        ... def predict(model, x, a):
        ...     with jaxsteer.nn.groups(a):      # entered inside the compiled function
        ...         return model(x)
        >>> predict(model, x, a).shape
        (5, 2)
    """
    codes = _as_codes(a)
    entry = (codes, _staging())
    stack = _stack()
    stack.append(entry)
    try:
        yield codes
    finally:
        stack.pop()


def current_groups() -> jax.Array | None:
    """The group ids of the innermost :func:`groups` block, or ``None`` outside any block."""
    stack = _stack()
    return stack[-1][0] if stack else None


def _context_groups() -> jax.Array:
    stack = _stack()
    if not stack:
        raise ValueError(
            "groups: this Steer was called without group ids. Pass them explicitly, steer(h, a), or "
            "run the model inside `with jaxsteer.nn.groups(a): ...` (inside the jitted function)."
        )
    codes, entered_staging = stack[-1]
    if not isinstance(codes, jax.core.Tracer) and not entered_staging and _staging():
        raise ValueError(
            "groups: the group ids were set with a concrete array outside the function being "
            "compiled, so they would be baked into the compiled code as a constant and silently "
            "reused on later calls. Pass the group ids as an argument of the jitted function and "
            "enter `with jaxsteer.nn.groups(a):` inside it."
        )
    return codes


# -- the per-group affine map ------------------------------------------------------------------------


def _apply_group_affine(A, b, h, g, lognormal: bool):
    """``A[g] h + b[g]`` row by row; ``A [m, d, d]``, ``b [m, d]``, ``h [..., d]``, ``g`` broadcastable."""
    h = jnp.asarray(h)
    m, d = A.shape[0], A.shape[-1]
    if h.ndim < 1 or h.shape[-1] != d:
        raise ValueError(f"h: expected hidden states [..., {d}], got shape {h.shape}.")
    lead = h.shape[:-1]
    g = _as_codes(g, size=m)
    if g.ndim > len(lead) or g.shape != lead[: g.ndim]:
        raise ValueError(
            f"a: group ids of shape {g.shape} must equal the leading axes {lead} of h (or a prefix of them, "
            f"broadcast over the rest)."
        )
    g = jnp.broadcast_to(g.reshape(g.shape + (1,) * (len(lead) - g.ndim)), lead)
    dtype = h.dtype if jnp.issubdtype(h.dtype, jnp.floating) else jnp.result_type(A.dtype)
    A, b = A.astype(dtype), b.astype(dtype)
    z = jnp.log(h) if lognormal else h.astype(dtype)
    out = _maps.apply_per_row(A, b, z.reshape((-1, d)), g.reshape((-1,)))
    out = out.reshape(z.shape)
    return jnp.exp(out) if lognormal else out


def _var(value, trainable: bool):
    return nnx.Param(value) if trainable else SteerState(value)


class Steer(nnx.Module):
    """Per-group affine maps ``h ↦ A[a] h + b[a]`` on hidden states (a Flax NNX module).

    Args:
        d: the hidden dimension.
        num_groups: ``m``, the number of groups (codes ``0..m−1``).
        trainable: store ``A``, ``b`` as ``nnx.Param`` (trained by optimizers) rather than as frozen
            :class:`SteerState`. Default ``True`` here (an identity start is meant to be trained);
            the ``from_*`` constructors default to frozen.
        lognormal: the maps act as ``h ↦ exp(A log h + b)`` (strictly positive ``h``).
        A: optional ``[m, d, d]`` initial linear parts (default: identities).
        b: optional ``[m, d]`` initial offsets (default: zeros).
        dtype: dtype of the stored parameters (default: that of ``A``/``b``, else JAX's default float).
        rngs: ignored (accepted so that ``flax.nnx.bridge.ToLinen(Steer, args=(d, m))`` works).

    Attributes:
        A: ``[m, d, d]`` variable (``nnx.Param`` or :class:`SteerState`).
        b: ``[m, d]`` variable.

    Calling ``steer(h, a=None)``: ``h [..., d]`` hidden states, ``a`` integer group codes shaped
    like the leading axes of ``h`` or a prefix of them (broadcast over the rest); when omitted, the
    ids of the enclosing :func:`groups` block are used. Returns ``[..., d]`` in ``h``'s floating dtype
    (the parameters are cast to it). Under ``jit`` out-of-range ids are not checked: such rows come
    out as zeros.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxsteer.nn import Steer
        >>> steer = Steer(2, 2, A=jnp.stack([jnp.eye(2), 2 * jnp.eye(2)]), trainable=False)
        >>> steer                                        # group 1's states are doubled
        Steer(d=2, num_groups=2, frozen, dtype=...)
        >>> h, a = jnp.ones((3, 2)), jnp.array([0, 1, 1])
        >>> steer(h, a).tolist()
        [[1.0, 1.0], [2.0, 2.0], [2.0, 2.0]]
        >>> steer(jnp.ones((3, 7, 2)), a).shape          # per-example ids [B] serve every token of [B, T, d]
        (3, 7, 2)
        >>> Steer.identity(384, 2)                       # trainable, starts as the identity
        Steer(d=384, num_groups=2, trainable, dtype=...)
    """

    def __init__(self, d: int, num_groups: int, *, trainable: bool = True, lognormal: bool = False,
                 A=None, b=None, dtype=None, rngs: nnx.Rngs | None = None):
        del rngs
        d, m = int(d), int(num_groups)
        if d < 1 or m < 1:
            raise ValueError(f"d, num_groups: must be positive, got d={d}, num_groups={m}.")
        if dtype is None:
            dtype = jnp.result_type(*(x for x in (A, b) if x is not None)) if (A is not None or b is not None) \
                else jnp.zeros(()).dtype
        if not jnp.issubdtype(dtype, jnp.floating):
            dtype = jnp.zeros(()).dtype
        A = jnp.broadcast_to(jnp.eye(d, dtype=dtype), (m, d, d)) if A is None else jnp.asarray(A, dtype)
        b = jnp.zeros((m, d), dtype) if b is None else jnp.asarray(b, dtype)
        if A.shape != (m, d, d):
            raise ValueError(f"A: expected shape ({m}, {d}, {d}) (one d×d matrix per group), got {A.shape}.")
        if b.shape != (m, d):
            raise ValueError(f"b: expected shape ({m}, {d}) (one offset per group), got {b.shape}.")
        self.d = d
        self.num_groups = m
        self.lognormal = bool(lognormal)
        self.A = _var(jnp.array(A), trainable)
        self.b = _var(jnp.array(b), trainable)

    # -- construction -------------------------------------------------------------------------------

    @classmethod
    def identity(cls, d: int, num_groups: int, *, trainable: bool = True, dtype=None) -> "Steer":
        """Identity maps for every group (``A = I``, ``b = 0``); trainable by default.

        Example:
            >>> import jax.numpy as jnp
            >>> from jaxsteer.nn import Steer
            >>> h, a = jnp.arange(6.0).reshape(3, 2), jnp.array([0, 1, 1])
            >>> Steer.identity(2, 2)(h, a).tolist()      # == h
            [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
        """
        return cls(d, num_groups, trainable=trainable, dtype=dtype)

    @classmethod
    def from_maps(cls, affine_map: _maps.AffineMap, *, trainable: bool = False, dtype=None) -> "Steer":
        """From per-group :class:`~jaxsteer.AffineMap` ``[m]`` (e.g. ``steerer.group_map_``); frozen by default.

        Example:
            >>> import jax.numpy as jnp
            >>> from jaxsteer import GaussianFamily, nearest_ideal
            >>> fam = GaussianFamily.univariate(priors=[[.3, .2], [.2, .3]], means=[[0., 1.], [2., 2.5]],
            ...                                 stds=[[1., 1.], [1., 2.]])     # k = 2 classes, m = 2 groups, d = 1
            >>> sol = nearest_ideal(fam, form="affine")
            >>> from jaxsteer.maps import moment_maps
            >>> from jaxsteer.nn import Steer
            >>> steer = Steer.from_maps(moment_maps(fam, sol))
            >>> steer
            Steer(d=1, num_groups=2, frozen, dtype=...)
            >>> h, a = jnp.array([[0.5], [1.5]]), jnp.array([0, 1])
            >>> bool(jnp.allclose(steer(h, a), moment_maps(fam, sol).apply(h, a)))
            True
        """
        if not isinstance(affine_map, _maps.AffineMap):
            raise TypeError(
                f"affine_map: expected a jaxsteer.AffineMap with one map per group, got "
                f"{type(affine_map).__name__}. The 'posterior' group map is not affine; use 'align' or 'moment'."
            )
        if len(affine_map.batch_shape) != 1:
            raise ValueError(
                f"affine_map: expected one map per group (batch shape [m]), got batch shape "
                f"{affine_map.batch_shape}; index a batched solution first, or use the group (not subgroup) maps."
            )
        m, d = affine_map.batch_shape[0], affine_map.d
        return cls(d, m, trainable=trainable, lognormal=affine_map.lognormal, A=affine_map.A,
                   b=affine_map.b, dtype=dtype)

    @classmethod
    def from_solution(cls, solution, family=None, *, map: str = "align", trainable: bool = False,
                      dtype=None) -> "Steer":
        """The label-free group maps of a :class:`~jaxsteer.Solution` (MATH §4); frozen by default.

        Args:
            solution: an unbatched :class:`~jaxsteer.Solution` of :func:`~jaxsteer.nearest_ideal`.
            family: the family the solution was computed from (needed by ``map="moment"``).
            map: ``"align"`` (``h ↦ A_a⁻¹(h − b_a)``, every group into template coordinates) or
                ``"moment"`` (W2 map of each group's mixture moments onto the ideal family's).
            trainable: store the maps as ``nnx.Param`` (fine-tuning) instead of :class:`SteerState`.
            dtype: parameter dtype (default: the solution's).

        Example:
            >>> from jaxsteer import GaussianFamily, nearest_ideal
            >>> fam = GaussianFamily.univariate(priors=[[.3, .2], [.2, .3]], means=[[0., 1.], [2., 2.5]],
            ...                                 stds=[[1., 1.], [1., 2.]])     # k = 2 classes, m = 2 groups, d = 1
            >>> sol = nearest_ideal(fam, form="affine")
            >>> from jaxsteer.nn import Steer
            >>> steer = Steer.from_solution(sol, fam, map="moment", trainable=True)   # to fine-tune
            >>> steer.trainable, steer.A.shape
            (True, (2, 1, 1))
        """
        if map not in ("align", "moment"):
            raise ValueError(
                f"map: a Steer needs affine group maps, 'align' or 'moment'; got {map!r} "
                f"('posterior' is not affine)."
            )
        if map == "moment" and family is None:
            raise ValueError("family: map='moment' needs the family the solution was computed from.")
        if family is None:
            family = solution.target
        return cls.from_maps(_maps.group_maps(family, solution, map), trainable=trainable, dtype=dtype)

    @classmethod
    def from_steerer(cls, steerer, *, trainable: bool = False, dtype=None) -> "Steer":
        """The fitted label-free group map ``steerer.group_map_`` of a :class:`~jaxsteer.Steerer`.

        Group codes are positions in ``steerer.groups_`` (``np.searchsorted(steerer.groups_, labels)``).
        Frozen by default.

        Example:
            >>> import jax.numpy as jnp, numpy as np
            >>> from jaxsteer import Steerer
            >>> from jaxsteer.nn import Steer
            >>> rng = np.random.default_rng(0)
            >>> y, a = rng.integers(0, 2, 500), rng.choice(["F", "M"], 500)
            >>> H = rng.normal(size=(500, 2)) + 0.8 * y[:, None] + (a == "F")[:, None]      # hidden states
            >>> st = Steerer(map="align").fit(H, y, a)
            >>> steer = Steer.from_steerer(st, dtype=jnp.float32)      # the model's dtype
            >>> steer
            Steer(d=2, num_groups=2, frozen, dtype=float32)
            >>> codes = np.searchsorted(st.groups_, a)                 # labels → group codes 0, 1
            >>> steer(jnp.asarray(H, jnp.float32), codes).shape
            (500, 2)
        """
        check = getattr(steerer, "_check_fitted", None)
        if check is not None:
            check()
        group_map = getattr(steerer, "group_map_", None)
        if group_map is None:
            raise TypeError(f"steerer: expected a fitted jaxsteer.Steerer, got {type(steerer).__name__}.")
        if not isinstance(group_map, _maps.AffineMap):
            raise TypeError(
                f"steerer: its group map ({type(group_map).__name__}, map={getattr(steerer, 'map', None)!r}) "
                "is not affine; fit the Steerer with map='align' or map='moment' to build a Steer."
            )
        return cls.from_maps(group_map, trainable=trainable, dtype=dtype)

    # -- use --------------------------------------------------------------------------------------------

    @property
    def trainable(self) -> bool:
        """Whether the maps are ``nnx.Param`` (trained) rather than frozen :class:`SteerState`."""
        return isinstance(self.A, nnx.Param)

    def to_map(self) -> _maps.AffineMap:
        """The current maps as a :class:`~jaxsteer.AffineMap` ``[m]`` (invertible, composable)."""
        return _maps.AffineMap(self.A[...], self.b[...], self.lognormal)

    def __call__(self, h, a=None, *, groups=None):
        a = _validate.renamed(a, groups, new_name="a", old_name="groups", why="group ids are `a` throughout jaxsteer", where="Steer")
        g = _context_groups() if a is None else a
        return _apply_group_affine(self.A[...], self.b[...], h, g, self.lognormal)

    def __repr__(self) -> str:
        kind = "trainable" if self.trainable else "frozen"
        ln = ", lognormal" if self.lognormal else ""
        return f"Steer(d={self.d}, num_groups={self.num_groups}, {kind}{ln}, dtype={self.A[...].dtype})"


# -- surgery -----------------------------------------------------------------------------------------


class Steered(nnx.Module):
    """``inner`` followed by ``steer``: what :func:`insert` puts in place of a submodule.

    Calling it calls ``inner(*args, **kwargs)`` and steers the (array) result with the group ids of
    the enclosing :func:`groups` block. Any other attribute or method is forwarded to ``inner``
    unchanged (only ``__call__`` is steered).
    """

    def __init__(self, inner, steer: Steer):
        if not isinstance(steer, Steer):
            raise TypeError(f"steer: expected a jaxsteer.nn.Steer, got {type(steer).__name__}.")
        self.inner = inner
        self.steer = steer

    def __call__(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)
        if not hasattr(out, "shape") or not hasattr(out, "dtype"):
            raise TypeError(
                f"Steered: the wrapped submodule returned {type(out).__name__}; a Steer can only follow a "
                "submodule that returns one array of hidden states [..., d]."
            )
        return self.steer(out)

    def __getattr__(self, name: str):
        # Only reached when normal lookup fails: forward public attributes to the wrapped module.
        if name.startswith("_") or "inner" not in vars(self):
            raise AttributeError(name)
        return getattr(vars(self)["inner"], name)


def _split_path(where) -> list[str]:
    if isinstance(where, str):
        parts = [p for p in where.replace("/", ".").split(".")]
    else:
        parts = [str(p) for p in where]
    if not parts or any(p == "" for p in parts):
        raise ValueError(
            f"where: expected a non-empty attribute path such as 'hidden' or 'encoder.layers.2', got {where!r}."
        )
    return parts


def _child(obj, part: str, where):
    if isinstance(obj, dict):
        if part in obj:
            return obj[part]
    elif part.isdigit() and not hasattr(obj, part):
        try:
            return obj[int(part)]
        except (IndexError, KeyError, TypeError):
            pass
    elif hasattr(obj, part):
        return getattr(obj, part)
    elif hasattr(obj, "__getitem__") and not isinstance(obj, (str, bytes)):
        try:
            return obj[part]
        except (KeyError, TypeError, IndexError):
            pass
    raise ValueError(f"where: {where!r} does not name a submodule; {type(obj).__name__} has no {part!r}.")


def _set_child(obj, part: str, value, where) -> None:
    if isinstance(obj, tuple):
        raise ValueError(
            f"where: {where!r} lies in a tuple, which cannot be modified in place; use a list or nnx.List."
        )
    if isinstance(obj, dict) or (not hasattr(obj, part) and hasattr(obj, "__setitem__")):
        obj[int(part) if part.isdigit() and not isinstance(obj, dict) else part] = value
    else:
        setattr(obj, part, value)


def _resolve(model, where):
    parts = _split_path(where)
    parent = model
    for p in parts[:-1]:
        parent = _child(parent, p, where)
    return parent, parts[-1], _child(parent, parts[-1], where)


def insert(model, where, steer: Steer) -> Steered:
    """Put ``steer`` after the submodule at ``where`` of an NNX ``model``, in place.

    The submodule is replaced by :class:`Steered` ``(submodule, steer)``, so the model's code is
    unchanged: wherever it called the submodule it now gets the steered output. Group ids come from
    the :func:`groups` context at call time. Undo with :func:`remove`.

    Args:
        model: an ``nnx.Module``.
        where: attribute path of the submodule, dotted (``"hidden"``, ``"encoder.layers.2"``; integers
            index lists, ``nnx.List``, ``nnx.Sequential.layers``; keys index dicts) or a sequence of
            parts.
        steer: the :class:`Steer` to apply (its ``d`` must match the submodule's output).

    Returns:
        The :class:`Steered` wrapper now in the model.

    Note:
        The wrapped submodule's variables move under ``<where>.inner`` and the steer's under
        ``<where>.steer`` in ``nnx.state(model)``: create optimizers and checkpoints after surgery.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> import jaxsteer.nn
        >>> class MLP(nnx.Module):
        ...     def __init__(self, rngs):
        ...         self.hidden = nnx.Linear(3, 4, rngs=rngs)
        ...         self.out = nnx.Linear(4, 2, rngs=rngs)
        ...     def __call__(self, x):
        ...         return self.out(nnx.relu(self.hidden(x)))
        >>> model = MLP(nnx.Rngs(0))
        >>> x, a = jnp.ones((5, 3)), jnp.array([0, 1, 1, 0, 1])        # inputs and their group ids
        >>> steer = jaxsteer.nn.Steer(4, 2, b=jnp.array([[0., 0., 0., 0.], [1., 1., 1., 1.]]))
        >>> before = model(x)
        >>> _ = jaxsteer.nn.insert(model, "hidden", steer)    # model.hidden is now Steered(hidden, steer)
        >>> with jaxsteer.nn.groups(a):
        ...     logits = model(x)
        >>> bool(jnp.allclose(logits[a == 0], before[a == 0]))   # group 0's map is the identity
        True
        >>> bool(jnp.allclose(logits[a == 1], before[a == 1]))   # group 1's hidden states are shifted
        False
    """
    if not isinstance(steer, Steer):
        raise TypeError(f"steer: expected a jaxsteer.nn.Steer, got {type(steer).__name__}.")
    parent, last, target = _resolve(model, where)
    if isinstance(target, Steered):
        raise ValueError(f"where: {where!r} is already steered; remove() it first or steer a different submodule.")
    if not callable(target):
        raise ValueError(f"where: {where!r} is a {type(target).__name__}, not a callable submodule.")
    wrapper = Steered(target, steer)
    _set_child(parent, last, wrapper, where)
    return wrapper


def remove(model, where) -> Steer:
    """Undo :func:`insert`: put the original submodule back at ``where`` and return the removed steer.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> import jaxsteer.nn
        >>> class MLP(nnx.Module):
        ...     def __init__(self, rngs):
        ...         self.hidden = nnx.Linear(3, 4, rngs=rngs)
        ...         self.out = nnx.Linear(4, 2, rngs=rngs)
        ...     def __call__(self, x):
        ...         return self.out(nnx.relu(self.hidden(x)))
        >>> model = MLP(nnx.Rngs(0))
        >>> x, a = jnp.ones((5, 3)), jnp.array([0, 1, 1, 0, 1])        # inputs and their group ids
        >>> before = model(x)
        >>> _ = jaxsteer.nn.insert(model, "hidden", jaxsteer.nn.Steer(4, 2, b=jnp.ones((2, 4))))
        >>> steer = jaxsteer.nn.remove(model, "hidden")
        >>> bool((model(x) == before).all())       # model(x) is again exactly the original
        True
    """
    parent, last, target = _resolve(model, where)
    if not isinstance(target, Steered):
        raise ValueError(f"where: {where!r} is not steered (found {type(target).__name__}); nothing to remove.")
    _set_child(parent, last, target.inner, where)
    return target.steer


# -- Linen ------------------------------------------------------------------------------------------


def _map_arrays(steer):
    if isinstance(steer, Steer):
        return steer.A[...], steer.b[...], steer.lognormal
    if isinstance(steer, _maps.AffineMap):
        if len(steer.batch_shape) != 1:
            raise ValueError(f"steer: expected one map per group (batch shape [m]), got {steer.batch_shape}.")
        return steer.A, steer.b, steer.lognormal
    raise TypeError(f"steer: expected a jaxsteer.nn.Steer or an AffineMap [m], got {type(steer).__name__}.")


@contextlib.contextmanager
def linen_steering(where, steer, *, a=None, method: str = "__call__", groups=None):
    """Steer the output of a named Linen submodule, without editing the model, inside this block.

    Uses ``flax.linen.intercept_methods``: every call of ``method`` of the submodule whose path
    (from the root module, e.g. ``"Dense_1"`` or ``"encoder.Dense_0"``) equals ``where`` has its
    output passed through the per-group maps. The maps are constants of the computation (frozen);
    for trainable maps inside Linen use ``flax.nnx.bridge.ToLinen(Steer, args=(d, m))``.

    Args:
        where: dotted (or ``/``-separated) path of the Linen submodule, or a tuple of names.
        steer: a :class:`Steer` or an :class:`~jaxsteer.AffineMap` ``[m]``.
        a: group ids; default: those of the enclosing :func:`groups` block at call time.
        method: the intercepted method name.
        groups: deprecated alias of ``a``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import flax.linen as nn
        >>> import jaxsteer.nn
        >>> class MLP(nn.Module):
        ...     @nn.compact
        ...     def __call__(self, x):
        ...         h = nn.relu(nn.Dense(4)(x))          # submodule "Dense_0"
        ...         return nn.Dense(2)(h)                # submodule "Dense_1"
        >>> model = MLP()
        >>> x, a = jnp.ones((5, 3)), jnp.array([0, 1, 1, 0, 1])
        >>> variables = model.init(jax.random.PRNGKey(0), x)
        >>> steer = jaxsteer.nn.Steer(4, 2, b=jnp.array([[0., 0., 0., 0.], [1., 1., 1., 1.]]))
        >>> with jaxsteer.nn.linen_steering("Dense_0", steer, a=a):
        ...     logits = model.apply(variables, x)
        >>> before = model.apply(variables, x)
        >>> bool(jnp.allclose(logits[a == 0], before[a == 0])), bool(jnp.allclose(logits[a == 1], before[a == 1]))
        (True, False)
    """
    from flax import linen

    a = _validate.renamed(a, groups, new_name="a", old_name="groups", why="group ids are `a` throughout jaxsteer", where="linen_steering")
    A, b, lognormal = _map_arrays(steer)
    target = tuple(_split_path(where))

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name == method and tuple(str(p) for p in context.module.path) == target:
            out = _apply_group_affine(A, b, out, _context_groups(), lognormal)
        return out

    with contextlib.ExitStack() as stack:
        if a is not None:
            stack.enter_context(_groups_ctx(a))
        stack.enter_context(linen.intercept_methods(interceptor))
        yield


_groups_ctx = groups
