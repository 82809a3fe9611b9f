import jax
import numpy as np
import pytest

from jaxsteer.datasets import make_gaussian_family


def test_make_gaussian_family_shapes_and_validity():
    fam = make_gaussian_family(jax.random.PRNGKey(0), 3, 2, 4, batch_shape=(5,))
    assert (fam.k, fam.m, fam.d, fam.batch_shape) == (3, 2, 4, (5,))
    np.testing.assert_allclose(fam.priors.sum(axis=(-2, -1)), 1.0, rtol=1e-12)
    assert np.all(np.linalg.eigvalsh(np.asarray(fam.covs)) >= 0.3 - 1e-12)
    again = make_gaussian_family(jax.random.PRNGKey(0), 3, 2, 4, batch_shape=(5,))
    np.testing.assert_array_equal(fam.means, again.means)


def test_make_gaussian_family_bad_arguments():
    with pytest.raises(ValueError, match="k, m, d"):
        make_gaussian_family(jax.random.PRNGKey(0), 0, 2, 2)
    with pytest.raises(ValueError, match="ridge"):
        make_gaussian_family(jax.random.PRNGKey(0), 2, 2, 2, ridge=0.0)
