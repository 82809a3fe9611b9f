"""The vendored real data sets: UCI Adult and ProPublica COMPAS (row counts, encoding, splits, errors)."""

from importlib import resources

import numpy as np
import pytest

from jaxsteer.datasets import TabularData, _tabular, adult, compas, load_adult, load_compas


@pytest.fixture(scope="module")
def adult_sex():
    return load_adult("sex")


@pytest.fixture(scope="module")
def compas_race():
    return load_compas("race")


def _check_encoding(data: TabularData, *, seen_test_categories: bool):
    """Shapes, dtypes, finiteness, standardisation and one-hot blocks of a default-encoded data set."""
    X, Xt = data.X_train, data.X_test
    d = X.shape[1]
    assert X.dtype == Xt.dtype == np.float64 and Xt.shape[1] == d
    for v in (data.y_train, data.y_test, data.a_train, data.a_test):
        assert v.dtype == np.int32
    assert X.shape[0] == len(data.y_train) == len(data.a_train)
    assert Xt.shape[0] == len(data.y_test) == len(data.a_test)
    assert np.all(np.isfinite(X)) and np.all(np.isfinite(Xt))
    assert len(data.feature_names) == d == data.n_features == len(data.mean) == len(data.scale)
    assert len(set(data.feature_names)) == d
    assert set(np.unique(data.y_train)) == set(range(data.n_classes))
    assert set(np.unique(data.a_train)) == set(range(data.n_groups))
    assert data.a_test.min() >= 0 and data.a_test.max() < data.n_groups
    # The blocks tile the columns in order.
    stops = [0] + [b.stop for b in data.feature_blocks.values()]
    assert [b.start for b in data.feature_blocks.values()] == stops[:-1] and stops[-1] == d
    for col, block in data.feature_blocks.items():
        xb, xtb = X[:, block], Xt[:, block]
        if col in data.categorical:
            assert np.all((xb == 0) | (xb == 1)) and np.all((xtb == 0) | (xtb == 1))
            np.testing.assert_array_equal(xb.sum(axis=1), 1.0)  # one category per train row
            assert np.all(xb.max(axis=0) == 1)  # every train category occurs in train
            if seen_test_categories:
                np.testing.assert_array_equal(xtb.sum(axis=1), 1.0)
            assert all(n.startswith(col + "=") for n in data.feature_names[block])
        else:
            assert block.stop - block.start == 1 and data.feature_names[block.start] == col
            np.testing.assert_allclose(xb.mean(), 0.0, atol=1e-12)
            np.testing.assert_allclose(xb.std(), 1.0, rtol=1e-12)
            # X * scale + mean recovers the raw column.
            np.testing.assert_allclose(
                Xt[:, block.start] * data.scale[block.start] + data.mean[block.start],
                data.raw_test[col],
                atol=1e-9,
            )


# --------------------------------------------------------------------------------------- Adult


def test_adult_official_split_counts_and_rates(adult_sex):
    data = adult_sex
    assert data.X_train.shape == (30162, 85) and data.X_test.shape == (15060, 85)
    assert data.group_names == ("Female", "Male") and data.class_names == ("<=50K", ">50K")
    np.testing.assert_allclose(data.y_train.mean(), 0.249, atol=5e-4)  # 7,508 / 30,162
    np.testing.assert_allclose(data.y_test.mean(), 0.246, atol=5e-4)
    np.testing.assert_allclose(data.a_train.mean(), 0.676, atol=5e-4)  # share of men
    # Codes agree with the cleaned raw columns (the test file's trailing '.' is gone).
    assert set(data.raw_test["income"]) == {"<=50K", ">50K"}
    np.testing.assert_array_equal(data.y_test, data.raw_test["income"] == ">50K")
    np.testing.assert_array_equal(data.a_train, data.raw_train["sex"] == "Male")
    assert not any("?" in set(v.tolist()) for v in data.raw_train.values() if v.dtype.kind == "U")
    assert "30162 train / 15060 test" in data.description and "30162" in repr(data)


def test_adult_encoding(adult_sex):
    _check_encoding(adult_sex, seen_test_categories=True)
    names = adult_sex.feature_names
    # Group column out of X by default, as are fnlwgt and education; race stays a feature.
    assert not any(n.startswith(("sex", "fnlwgt", "education=")) for n in names)
    assert "education-num" in names and "race=White" in names
    assert adult_sex.categorical == (
        "workclass", "marital-status", "occupation", "relationship", "race", "native-country"
    )


def test_adult_race_groups():
    binary = load_adult("race")
    assert binary.group_names == ("non-White", "White")
    np.testing.assert_array_equal(binary.a_train, binary.raw_train["race"] == "White")
    np.testing.assert_allclose(binary.a_train.mean(), 0.860, atol=5e-4)
    assert "sex=Male" in binary.feature_names and not any(n.startswith("race") for n in binary.feature_names)
    five = load_adult("race", binary_race=False)
    assert five.group_names == adult.RACES and five.n_groups == 5
    assert set(np.unique(five.a_train)) == set(range(5)) == set(np.unique(five.a_test))
    np.testing.assert_array_equal(np.array(adult.RACES)[five.a_test], five.raw_test["race"])
    _check_encoding(five, seen_test_categories=True)


def test_adult_options():
    base = load_adult("sex")
    full = load_adult("sex", include_group=True, drop=())
    assert full.n_features == base.n_features + 2 + 1 + 16  # sex, fnlwgt, education
    assert {"sex=Female", "sex=Male", "fnlwgt", "education=Bachelors"} <= set(full.feature_names)
    _check_encoding(full, seen_test_categories=True)

    plain = load_adult("sex", standardize=False)
    np.testing.assert_array_equal(plain.X_train[:, plain.feature_blocks["age"]][:, 0], plain.raw_train["age"])
    np.testing.assert_array_equal(plain.mean, 0.0)

    dummy = load_adult("sex", drop_first=True)
    assert dummy.n_features == base.n_features - len(base.categorical)
    assert "workclass=Federal-gov" not in dummy.feature_names  # first (sorted) category dropped

    codes = load_adult("sex", one_hot=False)
    assert codes.n_features == 11 and codes.feature_names[1] == "workclass"
    wc = codes.X_train[:, 1]
    assert set(np.unique(wc)) == set(range(7))
    categories = np.array(sorted(set(codes.raw_train["workclass"])))
    np.testing.assert_array_equal(categories[wc.astype(int)], codes.raw_train["workclass"])


def test_adult_random_split_is_stratified_and_seeded():
    a = load_adult("sex", test=0.3, seed=3)
    b = load_adult("sex", test=0.3, seed=3)
    c = load_adult("sex", test=0.3, seed=4)
    assert len(a.y_train) + len(a.y_test) == 45222
    np.testing.assert_array_equal(a.X_test, b.X_test)
    np.testing.assert_array_equal(a.raw_test["age"], b.raw_test["age"])
    assert not np.array_equal(a.raw_test["age"], c.raw_test["age"])
    for yy in (0, 1):
        for aa in (0, 1):
            n_tr = np.sum((a.y_train == yy) & (a.a_train == aa))
            n_te = np.sum((a.y_test == yy) & (a.a_test == aa))
            assert n_te == round(0.3 * (n_tr + n_te))
    _check_encoding(a, seen_test_categories=False)


# -------------------------------------------------------------------------------------- COMPAS


def test_compas_propublica_filter_counts():
    raw = compas._raw()
    assert len(raw["two_year_recid"]) == 6172
    assert np.all(np.abs(raw["days_b_screening_arrest"]) <= 30)
    assert "O" not in set(raw["c_charge_degree"]) and -1 not in set(raw["is_recid"])
    np.testing.assert_allclose(raw["two_year_recid"].mean(), 0.455, atol=5e-4)
    by_race = load_compas("race")
    assert len(by_race.y_train) + len(by_race.y_test) == 5278
    by_sex = load_compas("sex")
    assert len(by_sex.y_train) + len(by_sex.y_test) == 6172


def test_compas_default_encoding(compas_race):
    data = compas_race
    assert data.group_names == ("African-American", "Caucasian")
    assert data.class_names == ("no recidivism", "recidivism")
    assert data.X_train.shape == (3695, 9) and data.X_test.shape == (1583, 9)
    np.testing.assert_array_equal(data.a_test, data.raw_test["race"] == "Caucasian")
    np.testing.assert_array_equal(data.y_train, data.raw_train["two_year_recid"])
    y = np.concatenate([data.y_train, data.y_test])
    np.testing.assert_allclose(y.mean(), 0.470, atol=5e-4)  # 2,483 / 5,278
    assert data.feature_names == [
        "sex=Female", "sex=Male", "age", "juv_fel_count", "juv_misd_count", "juv_other_count",
        "priors_count", "c_charge_degree=F", "c_charge_degree=M",
    ]  # no scores, no race, no age_cat
    _check_encoding(data, seen_test_categories=True)


def test_compas_sex_group_and_options():
    data = load_compas("sex")
    assert data.group_names == ("Male", "Female")
    np.testing.assert_array_equal(data.a_train, data.raw_train["sex"] == "Female")
    assert "race=African-American" in data.feature_names
    assert not any(n.startswith("sex") for n in data.feature_names)
    _check_encoding(data, seen_test_categories=False)

    scored = load_compas("race", include_scores=True, include_group=True, drop=(), one_hot=False)
    assert scored.feature_names == list(compas.FEATURES + compas.SCORES)
    # Ordinal codes follow the natural order of score_text and age_cat.
    st = scored.X_train[:, scored.feature_blocks["score_text"]][:, 0].astype(int)
    np.testing.assert_array_equal(np.array(["Low", "Medium", "High"])[st], scored.raw_train["score_text"])
    ac = scored.X_test[:, scored.feature_blocks["age_cat"]][:, 0].astype(int)
    np.testing.assert_array_equal(np.array(compas._ORDER["age_cat"])[ac], scored.raw_test["age_cat"])
    with pytest.raises(ValueError, match="drop"):
        load_compas(drop=("decile_score",))  # a score column needs include_scores=True


def test_compas_split_is_seeded_and_stratified(compas_race):
    again = load_compas("race", seed=0)
    for f in ("X_train", "y_train", "a_train", "X_test", "y_test", "a_test"):
        np.testing.assert_array_equal(getattr(again, f), getattr(compas_race, f))
    other = load_compas("race", seed=1)
    assert not np.array_equal(other.raw_test["age"], compas_race.raw_test["age"])
    for test_size in (0.3, 0.5):
        data = load_compas("race", test_size=test_size, seed=7)
        for yy in (0, 1):
            for aa in (0, 1):
                n_tr = np.sum((data.y_train == yy) & (data.a_train == aa))
                n_te = np.sum((data.y_test == yy) & (data.a_test == aa))
                assert n_tr > 0 and n_te == round(test_size * (n_tr + n_te))


def test_compas_fits_a_family(compas_race):
    import jaxsteer as js

    fam = js.fit_family(*compas_race.train)  # Ledoit–Wolf copes with the collinear one-hot blocks
    assert (fam.k, fam.m, fam.d) == (2, 2, 9)
    assert np.all(np.isfinite(np.asarray(fam.covs)))


# ------------------------------------------------------------------------------------- helpers


def test_unseen_test_categories_encode_as_zeros():
    train = {"c": np.array(["b", "a", "b"]), "x": np.array([1, 2, 3])}
    test = {"c": np.array(["a", "z", "b"]), "x": np.array([2, 2, 2])}
    X, Xt, names, blocks, mean, scale = _tabular.encode(
        train, test, ["c", "x"], {"c": None}, standardize=True, one_hot=True, drop_first=False
    )
    assert names == ["c=a", "c=b", "x"]
    np.testing.assert_array_equal(Xt[:, :2], [[1, 0], [0, 0], [0, 1]])
    np.testing.assert_allclose(Xt[:, 2], 0.0, atol=1e-12)
    _, Xt, names, _, _, _ = _tabular.encode(
        train, test, ["c"], {"c": ("b", "a")}, standardize=True, one_hot=False, drop_first=False
    )
    np.testing.assert_array_equal(Xt[:, 0], [1, -1, 0])


def test_results_are_fresh_copies():
    first = load_compas("race")
    first.X_train[:] = np.nan
    first.raw_train["age"][:] = -1
    second = load_compas("race")
    assert np.all(np.isfinite(second.X_train)) and np.all(second.raw_train["age"] >= 18)
    tr, _ = adult._raw()
    assert not tr["age"].flags.writeable  # the cache itself is read-only
    d = load_adult()
    assert d.raw_train["age"].flags.writeable and d.raw_train["age"].base is not tr["age"]


def test_data_files_found_through_importlib_resources(tmp_path, monkeypatch):
    root = resources.files("jaxsteer.datasets").joinpath("data")
    for name in ("adult.data.gz", "adult.test.gz", "adult.names", "compas-two-years.csv.gz", "README.md"):
        assert root.joinpath(name).is_file(), name
    assert "C5XW20" in root.joinpath("README.md").read_text(encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # nothing may depend on the working directory
    adult._raw.cache_clear()
    compas._raw.cache_clear()
    assert load_adult().X_train.shape[0] == 30162
    assert len(load_compas().y_test) == 1583


# ---------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, arg",
    [
        (lambda: load_adult("age"), "group"),
        (lambda: load_adult(None), "group"),
        (lambda: load_adult(test="random"), "test"),
        (lambda: load_adult(test=1.0), "test"),
        (lambda: load_adult(test=0), "test"),
        (lambda: load_adult(test=True), "test"),
        (lambda: load_adult(test=0.3, seed=-1), "seed"),
        (lambda: load_adult(seed=1.5), "seed"),
        (lambda: load_adult(drop=("nope",)), "drop"),
        (lambda: load_adult(drop="fnlwgt"), "drop"),
        (lambda: load_adult(drop=("income",)), "drop"),
        (lambda: load_adult("sex", include_group=True, drop=("sex",)), "drop"),
        (lambda: load_adult(standardize="yes"), "standardize"),
        (lambda: load_adult(binary_race=None), "binary_race"),
        (lambda: load_compas("age"), "group"),
        (lambda: load_compas(test_size=0.0), "test_size"),
        (lambda: load_compas(test_size=1.0), "test_size"),
        (lambda: load_compas(test_size="0.3"), "test_size"),
        (lambda: load_compas(test_size=True), "test_size"),
        (lambda: load_compas(test_size=1e-6), "test_size"),  # empty test split
        (lambda: load_compas(seed="0"), "seed"),
        (lambda: load_compas(drop=("two_year_recid",)), "drop"),
        (lambda: load_compas(one_hot=1), "one_hot"),
        (lambda: load_compas(include_scores="no"), "include_scores"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(call, arg):
    with pytest.raises(ValueError, match=rf"^{arg}:"):
        call()
