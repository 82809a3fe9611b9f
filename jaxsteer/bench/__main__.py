"""``python -m jaxsteer.bench [run] [--quick] ...``, the same as ``jaxsteer bench`` (see :mod:`jaxsteer.bench.suite`)."""

import sys

from jaxsteer.bench.suite import main

sys.exit(main(prog="python -m jaxsteer.bench"))
