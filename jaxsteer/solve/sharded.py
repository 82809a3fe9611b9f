"""Scaling out: a batch of families sharded over every device (``jax.sharding``).

Problems in a batch are independent, so the batch axis is split over a one-axis device mesh with a
:class:`~jax.sharding.NamedSharding`, and :func:`jaxsteer.nearest_ideal` runs under ``jax.shard_map``
on each device's local slice: no communication, and (unlike letting the SPMD partitioner propagate
shardings) the LAPACK custom calls inside the solver are never replicated. Each device's ``while_loop`` runs only until *its* slowest problem is done,
so sharding also shortens the lock-step of a vmapped batch.

Multi-host: call ``jax.distributed.initialize()`` on every host first; ``jax.devices()`` then lists
the devices of all hosts and the same code shards the batch over all of them (each host must pass
the same global batch, or build it with ``jax.make_array_from_process_local_data``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxsteer.family import GaussianFamily

__all__ = ["batch_mesh", "nearest_ideal_sharded"]


def batch_mesh(devices=None) -> Mesh:
    """A one-axis mesh named ``"batch"`` over ``devices`` (default: all devices)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), ("batch",))


def nearest_ideal_sharded(family: GaussianFamily, *, mesh: Mesh | None = None, **options):
    """:func:`jaxsteer.nearest_ideal` on a batch ``[n, ...]`` sharded over ``mesh`` (all devices).

    The leading batch axis is padded (with copies of the first family) to a multiple of the device
    count, solved with the batch split across devices, and the padding is dropped. ``options`` are
    those of :func:`jaxsteer.nearest_ideal`. Returns the same :class:`~jaxsteer.Solution` as the
    unsharded call (its arrays are sharded along the batch axis).
    """
    if len(family.batch_shape) != 1:
        raise ValueError(f"family: expected one batch axis [n, ...]; got batch shape {family.batch_shape}.")
    mesh = batch_mesh() if mesh is None else mesh
    n = family.batch_shape[0]
    ndev = mesh.devices.size
    pad = (-n) % ndev

    def padded(x):
        x = jnp.asarray(x)
        if pad:
            x = jnp.concatenate([x, jnp.broadcast_to(x[:1], (pad,) + x.shape[1:])], axis=0)
        return jax.device_put(x, NamedSharding(mesh, PartitionSpec("batch")))

    arrays = tuple(padded(x) for x in (family.priors, family.means, family.covs))
    sol = _solve(arrays, family.lognormal, mesh, tuple(sorted(options.items())))
    if pad:
        sol = jax.tree_util.tree_map(lambda x: x[:n], sol)
    return sol


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _solve(arrays, lognormal, mesh, options):
    from jaxsteer.solve import nearest_ideal

    def local(q, mu, S):
        fam = GaussianFamily(priors=q, means=mu, covs=S, lognormal=lognormal, validate=False)
        return nearest_ideal(fam, **dict(options))

    spec = PartitionSpec("batch")
    return jax.shard_map(local, mesh=mesh, in_specs=(spec, spec, spec), out_specs=spec,
                         check_vma=False)(*arrays)
