"""One validation layer: the same mistake gets the same message from every public entry point.

Each mistake is made at every entry point that takes that kind of input; the messages must agree
exactly (they come from ``jaxsteer._validate``), name the argument, and carry the fix.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsteer as js
import jaxsteer.baselines
import jaxsteer.metrics as M
import jaxsteer.nn as jsn
from jaxsteer import _validate, estimate, losses, maps

jax.config.update("jax_enable_x64", True)

N, D = 40, 3


def _data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, D))
    y = np.tile([0, 1], N // 2)
    a = np.repeat([0, 1], N // 2)
    return X, y, a


def _group_code_entry_points():
    """``name -> f(a)`` calling an entry point with group codes ``a`` (other inputs valid)."""
    X, y, a = _data()
    fam = js.fit_family(X, y, a)
    T = maps.group_maps(fam, js.nearest_ideal(fam), map="align")
    steer = jsn.Steer(D, 2)
    return {
        "fit_family": lambda g: js.fit_family(X, y, g, num_groups=2),
        "update": lambda g: estimate.update(estimate.SuffStats.zeros(2, 2, D), X, y, g),
        "ideal_gap": lambda g: losses.ideal_gap(X, y, g, num_classes=2, num_groups=2),
        "tpr_gaps": lambda g: M.tpr_gaps(y, y, g, num_classes=2, num_groups=2),
        "AffineMap.apply": lambda g: T.apply(X, g),
        "sample_weights": lambda g: maps.sample_weights(jnp.ones((2, 2)), y, g),
        "Steer": lambda g: steer(jnp.asarray(X), g),
    }


def _message(f, arg):
    with pytest.raises(ValueError) as info:
        f(arg)
    return str(info.value)


_, _, _A = _data()
GROUP_MISTAKES = {
    "negative": (_A - (np.arange(N) == 5), r"^a: group codes must be non-negative; entry 5 is -1\. Map labels"),
    "fraction": (_A + 0.5 * (np.arange(N) == 7), r"^a: group codes must be integers; entry 7 is 0\.5\. Map labels"),
    "out of range": (_A + 3 * (np.arange(N) == 9), r"^a: group code 3 \(entry 9\) is out of range"),
    "strings": (np.array(["F", "M"] * (N // 2)), r"^a: group codes must be integers, got dtype <U1\. Map labels"),
}


@pytest.mark.parametrize("mistake", list(GROUP_MISTAKES))
def test_same_group_code_mistake_same_message(mistake):
    bad, pattern = GROUP_MISTAKES[mistake]
    messages = {name: _message(f, bad) for name, f in _group_code_entry_points().items()}
    for name, text in messages.items():
        assert re.match(pattern, text), (name, text)
    if mistake != "out of range":  # the range message names num_groups where the caller gave it
        assert len(set(messages.values())) == 1, messages
    else:
        sizes = {t.split(";")[0] for t in messages.values()}
        assert sizes <= {"a: group code 3 (entry 9) is out of range for num_groups=2",
                         "a: group code 3 (entry 9) is out of range"}, sizes


WEIGHT_MISTAKES = {
    "negative": (np.where(np.arange(N) == 4, -1.0, 1.0), "sample_weight: weights must be non-negative; entry 4 is -1.0."),
    "nan": (np.where(np.arange(N) == 6, np.nan, 1.0), "sample_weight: weights must be finite; entry 6 is nan."),
}


@pytest.mark.parametrize("mistake", list(WEIGHT_MISTAKES))
def test_same_weight_mistake_same_message(mistake):
    w, start = WEIGHT_MISTAKES[mistake]
    X, y, a = _data()
    calls = {
        "fit_family": lambda: js.fit_family(X, y, a, sample_weight=w),
        "ideal_gap": lambda: losses.ideal_gap(X, y, a, num_classes=2, num_groups=2, sample_weight=w),
        "tpr_gaps": lambda: M.tpr_gaps(y, y, a, sample_weight=w),
        "Steerer.fit": lambda: js.Steerer().fit(X, y, a, sample_weight=w),
        "MeanMatching.fit": lambda: js.baselines.MeanMatching().fit(X, y, a, sample_weight=w),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value).startswith(start), (name, str(info.value))


def test_same_feature_mistake_same_message():
    X, y, a = _data()
    X = X.copy()
    X[11, 2] = np.nan
    expected = "X: row 11, column 2 is nan; drop or impute rows with NaN or infinite values."
    for call in (lambda: js.fit_family(X, y, a), lambda: js.Steerer().fit(X, y, a),
                 lambda: js.baselines.LEACE().fit(X, y, a)):
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value) == expected
    with pytest.raises(ValueError) as info:
        losses.ideal_gap(X, y, a, num_classes=2, num_groups=2)
    assert str(info.value) == expected.replace("X:", "h:")


def test_estimators_name_cells_by_user_labels():
    X, _, _ = _data()
    y = np.array(["no", "yes"] * (N // 2), dtype=object)
    a = np.array(["F"] * (N // 2) + ["M"] * (N // 2))
    y[: N // 2] = "no"
    y[0] = "yes"  # the cell (yes, F) has one row
    with pytest.raises(ValueError, match=r"^y, a: class 'yes', group 'F' has 1 row;"):
        js.Steerer().fit(X, y, a)
    # the same data as codes: the cell is named by its codes, and the labels do not leak out of the block
    yc, ac = (np.unique(v, return_inverse=True)[1] for v in (y, a))
    with pytest.raises(ValueError, match=r"^y, a: class 1, group 0 has 1 row;"):
        js.fit_family(X, yc, ac)


def test_cell_names_scope():
    assert _validate.cell(1, 0) == "class 1, group 0"
    with _validate.cell_names(np.array([">50K", "<=50K"]), np.array(["Female", "Male"])):
        assert _validate.cell(0, 1) == "class '>50K', group 'Male'"
        with _validate.cell_names([0, 1], ["a", "b"]):
            assert _validate.cell(1, 1) == "class 1, group 'b'"
        assert _validate.cell(1, 0) == "class '<=50K', group 'Female'"
    assert _validate.cell(0, 1) == "class 0, group 1"


def test_labels_mistakes():
    with pytest.raises(ValueError, match=r"^a: entry 1 is missing \(None\)"):
        _validate.labels(np.array(["F", None, "M"], dtype=object), None, "a", 3)
    with pytest.raises(ValueError, match=r"^a: labels must be mutually sortable, got a mix of int, str"):
        _validate.labels(np.array(["F", 1, "M"], dtype=object), None, "a", 3)
    with pytest.raises(ValueError, match=r"^y: entry 2 is nan"):
        _validate.labels(np.array([0.0, 1.0, np.nan]), None, "y", 3)
    codes, cats = _validate.labels(np.array(["M", "F", "M"]), None, "a", 3)
    assert codes.tolist() == [1, 0, 1] and cats.tolist() == ["F", "M"]
    with pytest.raises(ValueError, match=r"^a: value 'X' \(entry 1\) was not seen in fit \(known: \['F', 'M'\]\)"):
        _validate.labels(np.array(["M", "X"]), cats, "a", 2)
    with pytest.raises(ValueError, match=r"^a: value 3 \(entry 0\) was not seen in fit"):
        _validate.labels(np.array([3]), cats, "a", 1)  # not even comparable with the categories


def test_codes_accept_bools_and_whole_floats():
    np.testing.assert_array_equal(_validate.codes(np.array([True, False]), "a", "group"), [1, 0])
    np.testing.assert_array_equal(_validate.codes(np.array([2.0, 0.0]), "a", "group", size=3), [2, 0])
    out = jax.jit(lambda c: _validate.jax_codes(c, "a", "group"))(jnp.array([1, 0]))
    assert out.dtype == jnp.int32


def test_safe_div_value_and_gradient():
    num, den = jnp.array([1.0, 2.0, 3.0]), jnp.array([2.0, 0.0, -1.0])
    np.testing.assert_array_equal(_validate.safe_div(num, den), [0.5, 0.0, 0.0])
    g = jax.grad(lambda d: jnp.sum(_validate.safe_div(num, d)))(den)
    np.testing.assert_allclose(g, [-0.25, 0.0, 0.0])
    assert np.all(np.isfinite(g))


def test_renamed_keyword():
    X, _, a = _data()
    steer = jsn.Steer(D, 2, A=np.stack([np.eye(D), 2 * np.eye(D)]))
    with pytest.warns(DeprecationWarning, match="renamed a="):
        old = steer(jnp.asarray(X), groups=a)
    np.testing.assert_array_equal(old, steer(jnp.asarray(X), a))
    with pytest.raises(TypeError, match="both a= and its deprecated alias groups="):
        steer(jnp.asarray(X), a, groups=a)


def test_text_where_numbers_belong_names_the_argument():
    X, y, a = _data()
    Xo = X.astype(object)
    Xo[3, 1] = "abc"
    with pytest.raises(ValueError, match=r"^X: expected real numbers, got dtype object; X\[3, 1\] is 'abc'"):
        js.fit_family(Xo, y, a)
    np.testing.assert_allclose(js.fit_family(X.astype(object), y, a).covs, js.fit_family(X, y, a).covs)
    for call in (lambda: js.Steerer().fit(X.astype(str), y, a), lambda: js.fit_family(X.astype(str), y, a)):
        with pytest.raises(ValueError, match=r"^X: expected real numbers, got dtype <U\d+; X\[0, 0\] is '.*X.astype\(float\)"):
            call()
    with pytest.raises(ValueError, match=r"^h: expected real numbers"):
        losses.ideal_gap(X.astype(str), y, a)
    with pytest.raises(ValueError, match=r"^priors: expected real numbers, got dtype <U3; priors\[0, 1\] is 'b'"):
        js.GaussianFamily(priors=np.array([["0.5", "b"], ["0", "0.5"]]), means=np.zeros((2, 2, 1)),
                          covs=np.ones((2, 2, 1, 1)))
    with pytest.raises(ValueError, match=r"^a: group codes must be integers, got dtype <U\d+"):
        M.demographic_parity_difference(y, a.astype(str))
    with pytest.raises(ValueError, match=r"^a: entry 0 is missing \(None\)"):
        js.Steerer().fit(X, y, np.array([None, "F"] * (N // 2), dtype=object))
