"""jaxsteer: optimal steering to exact fairness, in JAX.

The data's path through the package: data ``(X, y, a)`` → :func:`fit_family` (class × group
Gaussian model, :mod:`jaxsteer.estimate`) → :class:`GaussianFamily` → :func:`nearest_ideal` (the
nearest ideal family in KL) → :class:`Solution` (target family, maps, sample weights, convergence
diagnostics) → :func:`certificate` (Pinsker transfer bounds). :mod:`jaxsteer.ideal` checks ideal
conditions, :mod:`jaxsteer.bayes` gives the exact fairness of Bayes rules and
:mod:`jaxsteer.divergence` KL and Jensen–Shannon divergences; :mod:`jaxsteer.metrics` measures fairness of
predictions; :mod:`jaxsteer.maps` turns a solution into steering maps and :class:`Steerer` wraps the
whole path in a scikit-learn-style estimator; :mod:`jaxsteer.baselines` holds mean matching, MiMiC,
LEACE and reweighing with the same interface.
"""

from jaxsteer import baselines, bayes, divergence, estimate, ideal, maps, metrics
from jaxsteer._base import NotFittedError
from jaxsteer.certificates import Certificate, certificate
from jaxsteer.divergence import kl_divergence
from jaxsteer.estimate import SuffStats, fit_family
from jaxsteer.family import GaussianFamily
from jaxsteer.ideal import is_ideal
from jaxsteer.maps import AffineMap
from jaxsteer.solve import AffineMaps, Solution, Status, Template, nearest_ideal, status_message
from jaxsteer.steerer import Steerer
from jaxsteer.selection import Candidate, Selection, select  # noqa: F401  (EF variant chosen on validation data)
from jaxsteer.steering_vectors import fair_steering  # group-fair steering vectors (FairSteer: the NNX module)

__all__ = [
    "AffineMap",
    "AffineMaps",
    "Candidate",
    "Certificate",
    "GaussianFamily",
    "NotFittedError",
    "Solution",
    "Status",
    "Steerer",
    "Selection",
    "SuffStats",
    "Template",
    "baselines",
    "bayes",
    "certificate",
    "divergence",
    "estimate",
    "fair_steering",
    "fit_family",
    "ideal",
    "is_ideal",
    "kl_divergence",
    "maps",
    "metrics",
    "nearest_ideal",
    "select",
    "status_message",
]

__version__ = "0.1.0"


def __getattr__(name):
    # Flax-based and optional modules load on first use, so `import jaxsteer` stays light:
    # jaxsteer.nn (Steer module, surgery), jaxsteer.losses (ideal_gap), jaxsteer.models (encoder).
    if name in ("nn", "losses", "models"):
        import importlib

        return importlib.import_module(f"jaxsteer.{name}")
    raise AttributeError(f"module 'jaxsteer' has no attribute {name!r}")
