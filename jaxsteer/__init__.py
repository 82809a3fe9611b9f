"""jaxsteer: optimal steering to exact fairness, in JAX."""

from jaxsteer.divergence import kl_divergence
from jaxsteer.family import GaussianFamily
from jaxsteer.solve import AffineMaps, Solution, Template, nearest_ideal

__all__ = [
    "AffineMaps",
    "GaussianFamily",
    "Solution",
    "Template",
    "kl_divergence",
    "nearest_ideal",
]

__version__ = "0.1.0"
