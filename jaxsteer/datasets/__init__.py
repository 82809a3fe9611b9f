"""Data sets: synthetic class × group families and vendored real tabular data (Adult, COMPAS).

* :func:`make_gaussian_family` — random, well-conditioned class × group Gaussian families;
* :func:`load_adult` — UCI Adult (income > 50K; group ``sex`` or ``race``);
* :func:`load_compas` — ProPublica COMPAS (two-year recidivism; group ``race`` or ``sex``).

The real loaders need no network: the data ship, gzip-compressed, in ``jaxsteer/datasets/data/``
(provenance and licences in its ``README.md``) and are parsed with numpy and the standard library.
They return a :class:`TabularData` with ``X``/``y``/``a`` arrays for a train and a test split.
"""

from jaxsteer.datasets._tabular import TabularData
from jaxsteer.datasets.adult import load_adult
from jaxsteer.datasets.compas import load_compas
from jaxsteer.datasets.synthetic import make_gaussian_family

__all__ = ["TabularData", "load_adult", "load_compas", "make_gaussian_family"]
