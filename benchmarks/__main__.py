"""``python -m benchmarks [run] [--quick] [--out DIR] [--only SECTIONS]`` in a source checkout: the suite
of :mod:`jaxsteer.bench.suite` (the same as ``jaxsteer bench``), writing to ``benchmarks/results`` by default."""

import os
import sys

from jaxsteer.bench.suite import main

sys.exit(main(prog="python -m benchmarks", default_out=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")))
