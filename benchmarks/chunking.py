"""``python -m benchmarks.chunking`` in a source checkout runs :mod:`jaxsteer.bench.chunking` (one batch
layout per interpreter; ``python -m jaxsteer.bench.chunking`` anywhere)."""

from jaxsteer.bench.chunking import main  # noqa: F401

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
