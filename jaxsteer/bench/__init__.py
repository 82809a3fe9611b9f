"""The performance benchmarks, shipped with the package: ``jaxsteer bench [--quick]``.

* :mod:`jaxsteer.bench.suite`: the suite behind ``jaxsteer bench`` (throughput against scipy and
  cvxpy, batch layouts, large problems, compile vs run, roofline);
* :mod:`jaxsteer.bench.reference_solvers`: the side-by-side solvers (scipy L-BFGS, cvxpy + Clarabel);
* :mod:`jaxsteer.bench.chunking`: one batch layout per interpreter (``python -m jaxsteer.bench.chunking``);
* :mod:`jaxsteer.bench.core_solve`: KL by intervention × form and a few solve times
  (``python -m jaxsteer.bench.core_solve``).

The side-by-side solvers and the plots need the ``bench`` extra: ``pip install 'jaxsteer[bench]'``.
Importing this package imports none of the submodules.
"""


def main(argv=None, **kwargs) -> int:
    """``jaxsteer bench``: see :func:`jaxsteer.bench.suite.main`."""
    from jaxsteer.bench.suite import main as suite_main

    return suite_main(argv, **kwargs)
