"""``python -m benchmarks.core_solve`` in a source checkout runs :mod:`jaxsteer.bench.core_solve` (KL by
intervention × form and a few solve times; ``python -m jaxsteer.bench.core_solve`` anywhere)."""

from jaxsteer.bench.core_solve import main, timed  # noqa: F401

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
