"""``python -m jaxsteer`` runs the command line (see :mod:`jaxsteer.cli`)."""

import sys

from jaxsteer.cli import main

sys.exit(main())
