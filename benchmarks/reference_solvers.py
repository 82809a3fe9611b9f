"""The side-by-side solvers live in :mod:`jaxsteer.bench.reference_solvers`; re-exported here for code in
a source checkout."""

from jaxsteer.bench.reference_solvers import *  # noqa: F401,F403
from jaxsteer.bench.reference_solvers import __all__  # noqa: F401
