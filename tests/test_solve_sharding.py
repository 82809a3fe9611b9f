"""The batch sharded over 8 (virtual CPU) devices gives the unsharded result (run in a subprocess,
because the device count is fixed when JAX initialises)."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import jaxsteer as js
    from jaxsteer.datasets import make_gaussian_family
    from jaxsteer.solve.sharded import nearest_ideal_sharded

    assert len(jax.devices()) == 8, jax.devices()
    fam = make_gaussian_family(jax.random.PRNGKey(0), 2, 2, 3, batch_shape=(13,))  # 13: padded to 16
    for form in ("affine",):  # the affine solve runs the symmetric one as its first start
        ref = js.nearest_ideal(fam, form=form)
        sol = nearest_ideal_sharded(fam, form=form)
        assert len(sol.kl.sharding.device_set) == 8, sol.kl.sharding
        assert sol.kl.shape == (13,)
        np.testing.assert_allclose(sol.kl, ref.kl, rtol=1e-12)
        np.testing.assert_allclose(sol.target.covs, ref.target.covs, atol=1e-12)
        np.testing.assert_array_equal(sol.converged, ref.converged)
    print("OK")
""")


def test_sharded_equals_unsharded():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
    env["JAX_PLATFORMS"] = "cpu"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=root, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "OK" in out.stdout
