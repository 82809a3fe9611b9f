"""jaxsteer: optimal steering to exact fairness, in JAX.

The data's path through the package: a :class:`GaussianFamily` (class × group Gaussian model) →
:func:`nearest_ideal` (the nearest ideal family in KL) → a :class:`Solution` (target family, maps,
sample weights, convergence diagnostics). :mod:`jaxsteer.ideal` checks ideal conditions and the
exact fairness of Bayes rules.
"""

from jaxsteer import ideal
from jaxsteer.divergence import kl_divergence
from jaxsteer.family import GaussianFamily
from jaxsteer.ideal import is_ideal
from jaxsteer.solve import AffineMaps, Solution, Template, nearest_ideal

__all__ = [
    "AffineMaps",
    "GaussianFamily",
    "Solution",
    "Template",
    "ideal",
    "is_ideal",
    "kl_divergence",
    "nearest_ideal",
]

__version__ = "0.1.0"
