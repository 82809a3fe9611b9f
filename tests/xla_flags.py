"""XLA flags for the test runs, in one place: ``tests/conftest.py`` imports it, and ``.ci/run``'s doctest
step (which never loads the conftest) runs it as a script, which prints the flags.

It imports no jax: the flags must be set before jax starts its backend.
"""

import os
import subprocess
import sys

#: Tests are dominated by XLA compile time, not run time: skip the expensive backend passes.
BASE_XLA_FLAGS = "--xla_backend_optimization_level=0"
#: Compile each fusion with XLA:CPU's elemental emitters instead of the fusion emitters. Measured on
#: ``nearest_ideal`` ``all``/affine, k = m = 2, d = 3 (jax 0.9.2): compile 9.1–10.9 s -> 4.9–5.9 s, the
#: same KL and iteration count; the default suite 1,075 s -> 843 s on 2 cores. Run time is not what
#: it buys (the d = 64 ``all``/affine solve ran 14.1 -> 16.9 s with it), so it is a test setting only.
#: Newer jaxlibs (0.12) dropped the flag and abort on it: it is used only where a probe accepts it.
FAST_COMPILE_FLAG = "--xla_cpu_use_fusion_emitters=false"


def _accepted(flags: str) -> bool:
    """Whether this jaxlib starts its CPU backend with ``XLA_FLAGS=flags`` (unknown flags abort it)."""
    probe = "import jax.numpy as jnp; jnp.zeros(1).block_until_ready()"
    env = {**os.environ, "XLA_FLAGS": flags}
    try:
        return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def flags_for_tests() -> str:
    """The base flags, with the fast-compile flag where this jaxlib accepts it (one probe process)."""
    fast = f"{BASE_XLA_FLAGS} {FAST_COMPILE_FLAG}"
    return fast if _accepted(fast) else BASE_XLA_FLAGS


if __name__ == "__main__":
    print(flags_for_tests())
