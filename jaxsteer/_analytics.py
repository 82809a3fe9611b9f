"""Internals shared by the exact analytics of a family: :mod:`jaxsteer.ideal`, :mod:`jaxsteer.bayes`
and :mod:`jaxsteer.divergence`.

* :func:`check_family`, :func:`check_univariate`, :func:`check_cost`: argument checks whose messages
  start with the function's name;
* :func:`base_rates`: ``q(i|a)`` without ``0/0`` for an empty group;
* :data:`TAIL_Z`: the half-width of the fixed integration ranges;
* :func:`field_or_index`: the ``__getitem__`` of the result tuples (``r["eo_gap"]`` and ``r[0]``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsteer import _validate
from jaxsteer.family import GaussianFamily

__all__ = ["TAIL_Z", "check_family", "check_univariate", "check_cost", "base_rates", "field_or_index"]

#: Half-width, in standard deviations, of the region covered by the fixed grids and quadratures.
TAIL_Z = 12.0


def check_family(family, fname: str) -> None:
    if not isinstance(family, GaussianFamily):
        raise TypeError(f"{fname}: expected a GaussianFamily; got {type(family).__name__}.")


def check_univariate(family, fname: str, alternative: str) -> None:
    """``family.d == 1``; the message names ``alternative``, the function for any ``d``."""
    if family.d != 1:
        raise ValueError(
            f"{fname}: needs a univariate family (d == 1); got d={family.d}. "
            f"Use {alternative} for multivariate families."
        )


def check_cost(cost, k: int, dtype, fname: str) -> jax.Array:
    """A ``[k, k]`` cost matrix, finite where concrete, cast to ``dtype``."""
    cost = jnp.asarray(cost)
    if cost.shape != (k, k):
        raise ValueError(
            f"{fname}: cost must have shape (k, k) = ({k}, {k}) with cost[i, j] the cost of "
            f"predicting j when the truth is i; got shape {cost.shape}."
        )
    if _validate.is_concrete(cost) and not bool(jnp.all(jnp.isfinite(cost))):
        raise ValueError(f"{fname}: cost must be finite.")
    return cost.astype(dtype)


def base_rates(priors: jax.Array) -> jax.Array:
    """``q(i|a)`` from ``priors [..., k, m]``; a group with zero mass gets uniform base rates, not ``0/0``."""
    p = jnp.sum(priors, axis=-2, keepdims=True)
    k = priors.shape[-2]
    return jnp.where(p > 0, priors / jnp.where(p > 0, p, 1.0), 1.0 / k)


def field_or_index(self, key):
    """``__getitem__`` of a result NamedTuple: a field name (``r["eo_gap"]``) or an int/slice (``r[0]``).

    A name that is not a field, or a field that is ``None`` because it is not defined for this result
    (``tpr_gap`` when ``k > 2``), raises ``KeyError``, as the dict that these tuples replace did.
    """
    if not isinstance(key, str):
        return tuple.__getitem__(self, key)
    if key not in self._fields:
        raise KeyError(key)
    value = getattr(self, key)
    if value is None:
        raise KeyError(f"{key!r}: not defined for this {type(self).__name__} (the field is None).")
    return value
