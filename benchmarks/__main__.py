"""``python -m benchmarks run [--quick] [--out DIR] [--only SECTIONS]`` (see :mod:`benchmarks.suite`)."""

import sys

from benchmarks.suite import main

sys.exit(main())
