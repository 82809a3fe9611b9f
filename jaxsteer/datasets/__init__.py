"""Data sets: synthetic class × group families (real tabular data sets arrive with the estimation layer)."""

from jaxsteer.datasets.synthetic import make_gaussian_family

__all__ = ["make_gaussian_family"]
