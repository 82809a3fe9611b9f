"""Bios-style steering benchmark on real records: Adult profiles as sentences, MiniLM embeddings, sex as group.

    python -m benchmarks.experiments.llm_steering [--n N] [--seeds 5] [--pca 64] [--out benchmarks/results/llm_steering]
        [--cache DIR] [--no-inside] [--inside-n 3000] [--inside-steps 100]

The Bias-in-Bios benchmark (De-Arteaga et al., 2019) predicts a person's occupation from a short
biography and measures how differently the classifier treats women and men (the per-occupation gap in
true-positive rate); MiMiC (Singh et al., 2024) and LEACE (Belrose et al., 2023) steer the sentence
embeddings to close it. Bios itself cannot be shipped or downloaded here, so this script builds the same
experiment from the vendored UCI Adult records (45,222 clean rows, train and test pooled):

* **Sentences.** Each record becomes a short profile written like a biography (:func:`profile_sentence`):
  age, country of birth, race, education, employer type, weekly hours, marital status and household,
  capital gains/losses. Sex appears *only* through gendered words (she/he, her/his, woman/man,
  wife/husband, widow/widower), never as a field. The **occupation is left out** (it is a target) and
  so is the income. Four fixed templates, chosen by the record's row number, vary the word order so
  that the text reads like prose, not a table.
* **Embeddings.** ``load_encoder("all-MiniLM-L6-v2").encode(...)`` (384-d, mean pooled, L2-normalised),
  cached on disk (npz keyed by a hash of the model name and the sentences; ``--cache``).
* **Targets.** income (``>50K``, binary) and occupation (the 13 of Adult's 14 occupations that occur in
  both groups: *Armed-Forces*, 14 rows, has no woman, so its class×group cell is empty and no
  class-conditional steering can be fitted; its rows are left out of the occupation target only).
  Group = sex (0 = Female, 1 = Male).
* **Features and classifier.** The embeddings, projected on the top ``--pca`` principal components of
  the training split (default 64: see "solver cost" below), standardised, and a multinomial logistic
  regression (scikit-learn, lbfgs, ``C = 1``: deterministic).
* **Methods** (every map fitted on the training split only, applied to training *and* test embeddings —
  the representation protocol of ``benchmarks/experiments/tabular.py``): no steering, mean matching,
  MiMiC, LEACE (:mod:`jaxsteer.baselines`), and :class:`jaxsteer.Steerer` EF variants with the
  label-free maps ``posterior``, ``align`` and ``moment``; the classifier of an EF method is trained
  with the ideal family's class-balance weights ``Steerer.sample_weight`` (as in ``tabular.py``).
  Controls separate the maps from the weights: one unweighted EF row (the map alone), one row with the
  EF weights and no map, and reweighing (``jaxsteer.baselines.Reweighing``: weights making class and
  group independent). For the binary income target, fairlearn's ``ThresholdOptimizer`` (true-positive-
  rate parity, equalized odds) post-processes the logistic regression of the unsteered embeddings, with
  the known or predicted group at test time.
* **Group at test time.** *known*: the true sex selects each test row's map; *predicted* (the MiMiC
  protocol): a logistic-regression probe trained to predict sex from the *unsteered* 384-d training
  embeddings picks the map (its accuracy is reported). Training rows are always steered with the true
  sex. Fairness is always measured against the true sex.
* **Metrics** (test split): accuracy; per-class TPR gap ``TPR_female − TPR_male``; the RMS TPR gap
  over the classes (``jaxsteer.metrics.rms_tpr_gap``); for income also ΔDP and ΔEO.
* **Seeds.** ``--seeds`` random 70/30 splits stratified by (occupation, income, sex); mean ± sd.

**Solver cost** (measured before choosing the defaults, 2 shared cores, float64, synthetic data with
n = 31,000): at d = 64 and k×m = 13×2 cells, ``affirmative``/``symmetric`` fits in about 2 s (after
compilation), ``affirmative``/``affine`` takes about 230 s, and the ``all`` interventions did not finish
in 4 minutes; at k×m = 2×2, ``affirmative``/``affine`` takes about 40 s, ``all``/``symmetric`` about
20 s and ``all``/``affine`` more than 4 minutes. So by default (``--ef``) income uses
``affirmative``/``symmetric``, ``affirmative``/``affine`` and ``all``/``symmetric``, and occupation
``affirmative``/``symmetric`` only; the others are left out for time, not for quality.

**Inside the network** (``--inside``, on by default, a few minutes): a :class:`jaxsteer.nn.Steer` is
inserted after a middle transformer block (``--layer 3`` of 6, path ``encoder.layers.2``) of the
encoder's NNX model and fitted there: a ``Steerer`` (affirmative, symmetric, ``align`` map) on the
mean-pooled block outputs (padding excluded by the attention mask) of a stratified subsample
(``--inside-n``), grouped by sex, with the income labels. The map is affine, so applying it to every
token and then mean pooling steers the pooled state exactly as fitted; padding tokens are steered too,
harmlessly (attention never reads them and pooling skips them). The group ids reach the inserted Steer
through ``SentenceEncoder.encode(..., a=a)``, which enters ``jaxsteer.nn.groups`` inside its jitted
function. Downstream fairness is measured on the final sentence embeddings (same PCA + logistic
regression). Then *only* the Steer is fine-tuned end to end (``trainable=True``; ``nnx.Optimizer`` with
``wrt`` restricted to the Steer's parameters; ``jaxsteer.nn.groups`` entered inside the jitted step) with
``ideal_gap`` of the final pooled embeddings (projected on their top ``--inside-gap-pca`` = 16 training
principal components, so that a minibatch's class×group covariances can be estimated) plus
``--inside-mu`` × (1 − cosine) to the unsteered embeddings, so that it cannot collapse.

Outputs: ``<out>.json`` (every number, per seed) and ``<out>.md`` (tables), with the command line, n,
run time, machine and jax version.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence

import jax

jax.config.update("jax_enable_x64", True)  # float64 for the steering fits; the encoder runs in float32

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.experiments._common import environment, mean_sd, pm  # noqa: E402
import jaxsteer as js  # noqa: E402
from jaxsteer import baselines, metrics  # noqa: E402

STEM = "llm_steering"
MODEL = "all-MiniLM-L6-v2"
FEMALE, MALE = 0, 1
TARGETS = ("income", "occupation")

# -- the records ---------------------------------------------------------------------------------------

FIELDS = ("age", "workclass", "education", "marital-status", "occupation", "relationship", "race", "sex",
          "capital-gain", "capital-loss", "hours-per-week", "native-country", "income")


def load_records() -> dict[str, np.ndarray]:
    """The 45,222 clean Adult rows (official train rows, then test rows), raw columns."""
    from jaxsteer.datasets.adult import _raw

    train, test = _raw()
    return {c: np.concatenate([train[c], test[c]]) for c in FIELDS}


def take(records: Mapping[str, np.ndarray], idx) -> dict[str, np.ndarray]:
    return {c: np.asarray(v)[idx] for c, v in records.items()}


# -- sentences -----------------------------------------------------------------------------------------

_EDUCATION = {
    "Preschool": "only went to preschool",
    "1st-4th": "left school after the 4th grade",
    "5th-6th": "left school after the 6th grade",
    "7th-8th": "left school after the 8th grade",
    "9th": "left school after the 9th grade",
    "10th": "left school after the 10th grade",
    "11th": "left school after the 11th grade",
    "12th": "reached the 12th grade without a diploma",
    "HS-grad": "graduated from high school",
    "Some-college": "attended some college",
    "Assoc-voc": "holds a vocational associate degree",
    "Assoc-acdm": "holds an academic associate degree",
    "Bachelors": "holds a bachelor's degree",
    "Masters": "holds a master's degree",
    "Prof-school": "holds a professional school degree",
    "Doctorate": "holds a doctorate",
}
_WORK = {
    "Private": "works for a private employer",
    "Self-emp-not-inc": "is self-employed",
    "Self-emp-inc": "runs {poss} own incorporated business",
    "Federal-gov": "works for the federal government",
    "State-gov": "works for the state government",
    "Local-gov": "works for a local government",
    "Without-pay": "works without pay",
    "Never-worked": "has never worked",
}
_MARITAL = {
    "Married-civ-spouse": "is married",
    "Never-married": "has never been married",
    "Divorced": "is divorced",
    "Separated": "is separated",
    "Widowed": "is a {widow}",
    "Married-spouse-absent": "is married but lives apart from {poss} spouse",
    "Married-AF-spouse": "is married to a spouse in the military",
}
_HOUSEHOLD = {
    "Husband": "lives with {poss} {spouse}",
    "Wife": "lives with {poss} {spouse}",
    "Own-child": "lives with {poss} parents",
    "Not-in-family": "lives apart from {poss} family",
    "Other-relative": "lives with relatives",
    "Unmarried": "lives with family but without a partner",
}
_RACE = {
    "White": "white",
    "Black": "Black",
    "Asian-Pac-Islander": "Asian or Pacific Islander",
    "Amer-Indian-Eskimo": "American Indian or Alaska Native",
    "Other": "another race",
}
_COUNTRY = {
    "United-States": "the United States",
    "Outlying-US(Guam-USVI-etc)": "an outlying US territory",
    "Holand-Netherlands": "the Netherlands",
    "Trinadad&Tobago": "Trinidad and Tobago",
    "Hong": "Hong Kong",
    "South": "another country",  # Adult's "South" is ambiguous (South Korea? South Africa?)
    "Columbia": "Colombia",
    "Dominican-Republic": "the Dominican Republic",
    "Philippines": "the Philippines",
}

TEMPLATES = (
    "{P} is a {age}-year-old {noun} from {country} who identifies as {race}. {P} {edu} and {work}, "
    "{hours} hours a week. {P} {marital} and {household}.{capital}",
    "Born in {country}, this {age}-year-old {noun} {edu}. {P} identifies as {race}, {work} and puts in "
    "{hours} hours a week. {P} {marital} and {household}.{capital}",
    "At {age}, this {noun} {work}, {hours} hours a week. {P} {edu}, was born in {country} and identifies "
    "as {race}. {P} {marital} and {household}.{capital}",
    "{P} {marital} and {household}. A {age}-year-old {noun} born in {country}, {p} identifies as {race}. "
    "{P} {edu} and {work}, {hours} hours a week.{capital}",
)


def _country(c: str) -> str:
    return _COUNTRY.get(c, c.replace("-", " "))


def profile_sentence(record: Mapping[str, object], row: int) -> str:
    """A biography-like profile of one Adult record: sex only through gendered words, no occupation or income.

    Args:
        record: one row's raw fields (``age``, ``workclass``, ``education``, ``marital-status``,
            ``relationship``, ``race``, ``sex``, ``capital-gain``, ``capital-loss``, ``hours-per-week``,
            ``native-country``; any other field, ``occupation`` and ``income`` included, is ignored).
        row: the record's row number; ``row % 4`` picks one of the four :data:`TEMPLATES`.

    The spouse word (``husband``/``wife``) follows the person's sex (the data hold one ``Female``
    ``Husband`` and one ``Male`` ``Wife``: the text stays consistent with the sex).
    """
    female = str(record["sex"]) == "Female"
    P, p, poss = ("She", "she", "her") if female else ("He", "he", "his")
    words = dict(poss=poss, spouse="husband" if female else "wife", widow="widow" if female else "widower")
    gain, loss = int(record["capital-gain"]), int(record["capital-loss"])
    capital = ""
    if gain > 0:
        capital += f" {P} reported ${gain:,} in capital gains."
    if loss > 0:
        capital += f" {P} reported ${loss:,} in capital losses."
    return TEMPLATES[int(row) % len(TEMPLATES)].format(
        P=P, p=p, noun="woman" if female else "man", age=int(record["age"]),
        country=_country(str(record["native-country"])), race=_RACE[str(record["race"])],
        edu=_EDUCATION[str(record["education"])], work=_WORK[str(record["workclass"])].format(**words),
        hours=int(record["hours-per-week"]), marital=_MARITAL[str(record["marital-status"])].format(**words),
        household=_HOUSEHOLD[str(record["relationship"])].format(**words), capital=capital,
    )


def profile_sentences(records: Mapping[str, np.ndarray], rows=None) -> list[str]:
    """:func:`profile_sentence` of every record; ``rows`` (default ``0..n−1``) are the template row numbers."""
    n = len(records["sex"])
    rows = np.arange(n) if rows is None else np.asarray(rows)
    cols = {c: records[c].tolist() for c in records}
    return [profile_sentence({c: cols[c][i] for c in cols}, rows[i]) for i in range(n)]


# -- embeddings (cached) -------------------------------------------------------------------------------


def embedding_key(sentences: Sequence[str], encoder) -> str:
    """sha256 of the encoder's identity (name, pooling, normalisation, max length) and the sentences."""
    h = hashlib.sha256()
    h.update(f"{encoder.name}|{encoder.pooling}|{encoder.normalize}|{encoder.max_seq_length}|{len(sentences)}\n"
             .encode())
    for s in sentences:
        h.update(s.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def default_cache() -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "jaxsteer", "embeddings")


def embed(sentences: Sequence[str], encoder, *, cache: str | None, batch_size: int = 64, progress: bool = True,
          log=print) -> tuple[np.ndarray, dict]:
    """Sentence embeddings ``[n, d]`` float32, read from / written to ``cache`` (``None``: no cache)."""
    key = embedding_key(sentences, encoder)
    path = None
    if cache:
        name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(encoder.name))
        path = os.path.join(cache, f"{name}-{key[:20]}.npz")
        if os.path.exists(path):
            with np.load(path) as f:
                if str(f["key"]) == key and f["embeddings"].shape[0] == len(sentences):
                    log(f"embeddings: read {path}")
                    return f["embeddings"], {"cached": True, "path": path, "seconds": 0.0}
    t0 = time.perf_counter()
    E = encoder.encode(list(sentences), batch_size=batch_size, progress=progress)
    dt = time.perf_counter() - t0
    log(f"embeddings: {len(sentences)} sentences in {dt:.1f} s ({len(sentences) / max(dt, 1e-9):.0f} sentences/s)")
    if path:
        os.makedirs(cache, exist_ok=True)
        tmp = path + ".tmp.npz"
        np.savez(tmp, embeddings=E, key=np.asarray(key))
        os.replace(tmp, path)
        log(f"embeddings: wrote {path}")
    return E, {"cached": False, "path": path, "seconds": round(dt, 1)}


# -- sampling ------------------------------------------------------------------------------------------


def strata(records: Mapping[str, np.ndarray]) -> np.ndarray:
    """Integer stratum of each record: (occupation, income, sex)."""
    key = [f"{o}|{i}|{x}" for o, i, x in zip(records["occupation"].tolist(), records["income"].tolist(),
                                            records["sex"].tolist())]
    return np.unique(np.asarray(key), return_inverse=True)[1].reshape(-1)


def stratified_subset(keys: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of about ``fraction · n_s`` random rows of every stratum ``s`` of ``keys``.

    ``floor(fraction · n_s)`` rows, plus one more with probability equal to the fractional part
    (so that small strata are represented in expectation rather than always dropped).
    """
    out = []
    for s in np.unique(keys):
        rows = np.flatnonzero(keys == s)
        exact = fraction * len(rows)
        take_n = min(len(rows), int(np.floor(exact)) + int(rng.random() < exact - np.floor(exact)))
        if take_n:
            out.append(rng.choice(rows, size=take_n, replace=False))
    return np.sort(np.concatenate(out)) if out else np.zeros(0, int)


def stratified_split(keys: np.ndarray, test: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices, ``test`` of every stratum in the test split (seeded)."""
    te = stratified_subset(keys, test, np.random.default_rng(seed))
    tr = np.setdiff1d(np.arange(len(keys)), te)
    return tr, te


# -- metrics -------------------------------------------------------------------------------------------


def signed_tpr_gaps(y, pred, a, k: int) -> np.ndarray:
    """``TPR_female − TPR_male`` of every class ``[k]`` (NaN where a group has no row of the class)."""
    y, pred, a = (np.asarray(v) for v in (y, pred, a))
    out = np.full(k, np.nan)
    for i in range(k):
        rates = []
        for g in (FEMALE, MALE):
            sel = (y == i) & (a == g)
            rates.append(np.mean(pred[sel] == i) if sel.any() else np.nan)
        out[i] = rates[0] - rates[1]
    return out


def scores(y, pred, a, k: int) -> dict:
    """Accuracy, signed per-class TPR gaps, RMS TPR gap (and ΔDP, ΔEO for two classes) on the true groups."""
    y, pred, a = (np.asarray(v, np.int32) for v in (y, pred, a))
    out = {
        "accuracy": float(metrics.accuracy(y, pred)),
        "rms_tpr_gap": float(metrics.rms_tpr_gap(y, pred, a, num_classes=k, num_groups=2)),
        "tpr_gaps": [None if not np.isfinite(g) else float(g) for g in signed_tpr_gaps(y, pred, a, k)],
    }
    if k == 2:
        out["dp"] = float(metrics.demographic_parity_difference(pred, a, num_groups=2))
        out["eo"] = float(metrics.equal_opportunity_difference(y, pred, a, num_groups=2))
    return out


# -- classifiers and features --------------------------------------------------------------------------


def fit_lr(X, y, w=None, *, max_iter: int = 1000):
    """Standardise, then scikit-learn's (multinomial) logistic regression, lbfgs, C = 1; returns ``predict``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    X = np.asarray(X, np.float64)
    scaler = StandardScaler().fit(X, sample_weight=w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a ConvergenceWarning at max_iter is recorded by n_iter_ instead
        clf = LogisticRegression(C=1.0, max_iter=max_iter, tol=1e-4).fit(scaler.transform(X), y, sample_weight=w)
    return lambda Z: clf.predict(scaler.transform(np.asarray(Z, np.float64))).astype(np.int32)


def fit_thresholds(X, y, a, constraint: str, *, max_iter: int = 1000, seed: int = 0):
    """fairlearn's ``ThresholdOptimizer`` (``constraint``) on the standardised logistic regression of
    :func:`fit_lr`, fitted on the training rows; returns ``predict(Z, groups)`` (randomised between
    thresholds with ``random_state=seed``)."""
    from fairlearn.postprocessing import ThresholdOptimizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    est = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=max_iter, tol=1e-4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        to = ThresholdOptimizer(estimator=est, constraints=constraint, predict_method="predict_proba")
        to.fit(np.asarray(X, np.float64), y, sensitive_features=a)
    return lambda Z, groups: np.asarray(
        to.predict(np.asarray(Z, np.float64), sensitive_features=groups, random_state=seed)).astype(np.int32)


def pca_basis(X: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[d]`` and top-``p`` principal directions ``[d, p]`` of ``X`` (``p <= 0`` or ``>= d``: identity)."""
    X = np.asarray(X, np.float64)
    mu = X.mean(0)
    if p <= 0 or p >= X.shape[1]:
        return mu, np.eye(X.shape[1])
    _, _, vt = np.linalg.svd(X - mu, full_matrices=False)
    return mu, vt[:p].T


# -- methods -------------------------------------------------------------------------------------------

DEFAULT_EF = {
    "income": ("affirmative/symmetric", "affirmative/affine", "all/symmetric"),
    "occupation": ("affirmative/symmetric", "affirmative/affine", "all/symmetric"),
}
EF_MAPS = ("posterior", "align", "moment")
BASELINES = (("mean matching", baselines.MeanMatching), ("MiMiC", baselines.MiMiC), ("LEACE", baselines.LEACE))


def _apply(mapper, Z, a):
    """A label-free group map (AffineMap or PosteriorMap [m]) or a baseline, applied with groups ``a``."""
    if hasattr(mapper, "group_map_") or isinstance(mapper, baselines._Baseline):
        return np.asarray(mapper.transform(Z, a))
    return np.asarray(mapper.apply(jnp.asarray(Z), jnp.asarray(a, jnp.int32)))


def run_target(target, Ztr, ytr, atr, Zte, yte, ate, ahat, k, cfg, log) -> dict:
    """Every method on one target and split: ``{method: {"known": scores, "predicted": scores, ...}}``."""
    rows = {}

    def evaluate(name, mapper, w=None, extra=None):
        t0 = time.perf_counter()
        Xtr = Ztr if mapper is None else _apply(mapper, Ztr, atr)
        predict = fit_lr(Xtr, ytr, w, max_iter=cfg["lr_max_iter"])
        res = dict(extra or {})
        for proto, groups in (("known", ate), ("predicted", ahat)):
            if mapper is None or isinstance(mapper, baselines.LEACE):
                if proto == "predicted":  # the map does not depend on the group: same predictions
                    res[proto] = res["known"]
                    continue
                Xte = Zte if mapper is None else _apply(mapper, Zte, None)
            else:
                Xte = _apply(mapper, Zte, groups)
            res[proto] = scores(yte, predict(Xte), ate, k)
        record(name, res, time.perf_counter() - t0 + (extra or {}).get("fit_seconds", 0.0))

    def record(name, res, seconds):
        res["seconds"] = round(seconds, 2)
        rows[name] = res
        kn, pr = res["known"], res["predicted"]
        log(f"    {target:<10} {name:<42} acc {kn['accuracy']:.4f}/{pr['accuracy']:.4f}  "
            f"RMS gap {kn['rms_tpr_gap']:.4f}/{pr['rms_tpr_gap']:.4f}"
            + (f"  ΔEO {kn['eo']:.4f}/{pr['eo']:.4f}" if k == 2 else "") + f"  ({res['seconds']:.1f} s)")

    evaluate("none", None)
    # Controls: how much of a fairness gain the class-balance weights alone bring.
    t0 = time.perf_counter()
    rw = baselines.Reweighing().fit(Ztr, ytr, atr)
    evaluate("reweighing", None, w=rw.sample_weight(ytr, atr), extra={"fit_seconds": time.perf_counter() - t0})
    if k == 2 and cfg.get("thresholds", True):
        for label, constraint in (("TPR parity", "true_positive_rate_parity"), ("equalized odds", "equalized_odds")):
            t0 = time.perf_counter()
            predict = fit_thresholds(Ztr, ytr, atr, constraint, max_iter=cfg["lr_max_iter"])
            res = {proto: scores(yte, predict(Zte, groups), ate, k) for proto, groups in (("known", ate), ("predicted", ahat))}
            record(f"ThresholdOptimizer, {label}", res, time.perf_counter() - t0)
    for name, cls in BASELINES:
        t0 = time.perf_counter()
        b = cls().fit(Ztr, ytr, atr)
        evaluate(name, b, extra={"fit_seconds": time.perf_counter() - t0})
    for variant in cfg["ef"][target]:
        inter, form = variant.split("/")
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            st = js.Steerer(intervention=inter, form=form, map="align").fit(Ztr, ytr, atr)
        fit_s = time.perf_counter() - t0
        sol = st.solution_
        info = {"kl": float(sol.kl), "converged": bool(np.all(np.asarray(sol.converged))),
                "residual": float(np.max(np.asarray(sol.residual))), "fit_seconds": round(fit_s, 2),
                "warnings": [str(w.message) for w in caught]}
        log(f"    {target:<10} EF {variant}: KL {info['kl']:.4f} nats, converged {info['converged']}, "
            f"fit {fit_s:.1f} s")
        w = st.sample_weight(ytr, atr)
        for kind in cfg["maps"]:
            gm = js.maps.group_maps(st.family_, sol, kind)
            evaluate(f"EF {variant} [{kind}]", gm, w=w, extra=info)
        if variant == cfg["ef"][target][0]:  # the map alone, without the class balance; the balance alone
            evaluate(f"EF {variant} [{cfg['maps'][0]}], unweighted", js.maps.group_maps(st.family_, sol, cfg["maps"][0]),
                     extra=info)
            evaluate(f"EF {variant}, class-balance weights only", None, w=w, extra=info)
    return rows


def occupation_classes(records, min_rows: int) -> tuple[list[str], list[str]]:
    """Occupations with at least ``min_rows`` rows in each group (kept) and the others (left out)."""
    occ, sex = records["occupation"], records["sex"]
    keep, drop = [], []
    for c in np.unique(occ):
        counts = [int(np.sum((occ == c) & (sex == s))) for s in ("Female", "Male")]
        (keep if min(counts) >= min_rows else drop).append(str(c))
    return keep, drop


def run(records, encoder, cfg: dict, log=print) -> dict:
    """The benchmark on ``records`` (raw Adult columns) with ``encoder`` (a :class:`SentenceEncoder`)."""
    t_start = time.perf_counter()
    n = len(records["sex"])
    rows = np.asarray(cfg.get("rows", np.arange(n)))
    sentences = profile_sentences(records, rows)
    E, emb_info = embed(sentences, encoder, cache=cfg["cache"], batch_size=cfg["batch_size"],
                        progress=cfg["progress"], log=log)
    E = np.asarray(E, np.float64)
    a_all = (records["sex"] == "Male").astype(np.int32)
    keys = strata(records)
    y_income = (records["income"] == ">50K").astype(np.int32)
    keep, dropped = occupation_classes(records, cfg["min_cell_rows"])
    occ_code = {c: i for i, c in enumerate(keep)}
    y_occ = np.array([occ_code.get(c, -1) for c in records["occupation"].tolist()], np.int32)
    log(f"{n} records, d = {E.shape[1]}; occupation classes kept {len(keep)}, left out {dropped}")
    labels = {"income": (y_income, ["<=50K", ">50K"]), "occupation": (y_occ, keep)}
    per_seed = []
    for seed in range(cfg["seeds"]):
        t0 = time.perf_counter()
        tr, te = stratified_split(keys, cfg["test"], seed)
        atr, ate = a_all[tr], a_all[te]
        probe = fit_lr(E[tr], atr, max_iter=cfg["lr_max_iter"])
        ahat = probe(E[te])
        probe_acc = float(np.mean(ahat == ate))
        mu, U = pca_basis(E[tr], cfg["pca"])
        Z = (E - mu) @ U
        log(f"  seed {seed}: train {len(tr)}, test {len(te)}, d = {Z.shape[1]}; sex probe accuracy {probe_acc:.4f}")
        res = {"seed": seed, "n_train": int(len(tr)), "n_test": int(len(te)), "probe_accuracy": probe_acc,
               "targets": {}}
        for target in cfg["targets"]:
            y, _ = labels[target]
            mtr, mte = tr[y[tr] >= 0], te[y[te] >= 0]
            ahat_t = ahat[y[te] >= 0]
            k = int(y.max()) + 1
            res["targets"][target] = run_target(target, Z[mtr], y[mtr], a_all[mtr], Z[mte], y[mte], a_all[mte],
                                                ahat_t, k, cfg, log)
        res["seconds"] = round(time.perf_counter() - t0, 1)
        per_seed.append(res)
    out = {
        "config": {k: v for k, v in cfg.items() if k not in ("rows",)},
        "n": n,
        "embedding": dict(emb_info, model=str(encoder.name), dim=int(E.shape[1])),
        "sentence_examples": sentences[:4],
        "tokens_mean": float(np.mean([len(t) for t in encoder.tokenize(sentences[:2000])])),
        "groups": {"Female": int(np.sum(a_all == 0)), "Male": int(np.sum(a_all == 1))},
        "classes": {t: labels[t][1] for t in cfg["targets"]},
        "occupation_left_out": dropped,
        "female_share": {str(c): float(np.mean(records["sex"][records["occupation"] == c] == "Female"))
                         for c in np.unique(records["occupation"])},
        "per_seed": per_seed,
        "summary": summarize(per_seed, cfg["targets"]),
    }
    if cfg.get("inside"):
        out["inside"] = inside_network(records, sentences, encoder, E, cfg, log)
    out["seconds"] = round(time.perf_counter() - t_start, 1)
    out["_data"] = (sentences, E)  # for a later inside section (not written out)
    return out


# -- aggregation ---------------------------------------------------------------------------------------


def summarize(per_seed, targets) -> dict:
    out = {"probe_accuracy": mean_sd([r["probe_accuracy"] for r in per_seed])}
    for t in targets:
        methods = list(per_seed[0]["targets"][t])
        out[t] = {}
        for m in methods:
            rows = [r["targets"][t][m] for r in per_seed]
            entry = {}
            for proto in ("known", "predicted"):
                keys = [key for key in ("accuracy", "rms_tpr_gap", "dp", "eo") if key in rows[0][proto]]
                entry[proto] = {key: mean_sd([r[proto][key] for r in rows]) for key in keys}
                k = len(rows[0][proto]["tpr_gaps"])
                entry[proto]["tpr_gaps"] = [mean_sd([r[proto]["tpr_gaps"][i] for r in rows]) for i in range(k)]
            if "kl" in rows[0]:
                entry["kl"] = mean_sd([r["kl"] for r in rows])
                entry["converged"] = all(r["converged"] for r in rows)
            entry["seconds"] = mean_sd([r["seconds"] for r in rows])
            out[t][m] = entry
    return out


# -- steering inside the network -----------------------------------------------------------------------


def _pooled(states, mask):
    m = mask[..., None].astype(np.float64)
    return (states.astype(np.float64) * m).sum(-2) / np.maximum(m.sum(-2), 1e-9)


def _gap(E, y, a, mu, U):
    """ideal_gap (affirmative, symmetric, reference Male; float64, cold) of embeddings on a PCA basis, nats."""
    from jaxsteer import losses

    h = jnp.asarray((np.asarray(E, np.float64) - mu) @ U)
    return float(losses.ideal_gap(h, jnp.asarray(y, jnp.int32), jnp.asarray(a, jnp.int32), num_classes=2,
                                  num_groups=2, intervention="affirmative", form="symmetric", reference=MALE))


def _cell_weights(y, a):
    """``[2, 2]`` class×group frequencies of the training rows."""
    return np.bincount(2 * np.asarray(y) + np.asarray(a), minlength=4).reshape(2, 2) / len(y)


def inside_network(records, sentences, encoder, E, cfg, log=print) -> dict:
    """Fit a Steer after block ``cfg['layer']`` of the encoder, measure downstream fairness, fine-tune it."""
    import optax
    from flax import nnx

    from jaxsteer import losses
    from jaxsteer import nn as jsn
    from jaxsteer.models import sentence_embedding

    t_start = time.perf_counter()
    n = len(sentences)
    keys = strata(records)
    n_in = min(int(cfg["inside_n"]), n)
    sub = np.arange(n) if n_in >= n else stratified_subset(keys, n_in / n, np.random.default_rng(1234))
    tr_i, te_i = stratified_split(keys[sub], cfg["test"], 0)
    tr, te = sub[tr_i], sub[te_i]
    y = (records["income"] == ">50K").astype(np.int32)
    a = (records["sex"] == "Male").astype(np.int32)
    ytr, yte, atr, ate = y[tr], y[te], a[tr], a[te]
    S_tr, S_te = [sentences[i] for i in tr], [sentences[i] for i in te]
    E0_tr, E0_te = np.asarray(E[tr], np.float64), np.asarray(E[te], np.float64)
    layer = int(cfg["layer"])
    if not 1 <= layer <= encoder.num_layers:
        raise ValueError(f"layer: expected 1..{encoder.num_layers}, got {layer}.")
    where = f"encoder.layers.{layer - 1}"
    model = encoder.model
    d = encoder.dim
    p = int(cfg["pca"]) if 0 < int(cfg["pca"]) < d else d
    log(f"inside: {len(tr)} train / {len(te)} test sentences; Steer after block {layer} of {encoder.num_layers} "
        f"({where}); steering subspace p = {p} of d = {d}")
    probe = fit_lr(E0_tr, atr, max_iter=cfg["lr_max_iter"])
    ahat = probe(E0_te)
    # the ideal gap (training loss and test report) on the top `inside_gap_pca` principal components of the
    # unsteered final embeddings: few enough that a minibatch's class×group covariances are estimable
    mu0, U0 = pca_basis(E0_tr, int(cfg["inside_gap_pca"]))

    results = {}

    def downstream(name, Etr, Ete_known, Ete_pred, extra=None):
        mu, U = pca_basis(Etr, cfg["pca"])
        predict = fit_lr((Etr - mu) @ U, ytr, max_iter=cfg["lr_max_iter"])
        res = dict(extra or {})
        res["known"] = scores(yte, predict((Ete_known - mu) @ U), ate, 2)
        res["predicted"] = scores(yte, predict((Ete_pred - mu) @ U), ate, 2)
        res["test_gap"] = _gap(Ete_known, yte, ate, mu0, U0)
        res["cosine_to_unsteered"] = float(np.mean(np.sum(Ete_known * E0_te, axis=1)
                                                   / np.linalg.norm(Ete_known, axis=1) / np.linalg.norm(E0_te, axis=1)))
        results[name] = res
        kn, pr = res["known"], res["predicted"]
        log(f"    inside {name:<44} acc {kn['accuracy']:.4f}/{pr['accuracy']:.4f}  RMS {kn['rms_tpr_gap']:.4f}/"
            f"{pr['rms_tpr_gap']:.4f}  ΔEO {kn['eo']:.4f}/{pr['eo']:.4f}  gap {res['test_gap']:.4f}  "
            f"cos {res['cosine_to_unsteered']:.4f}")

    downstream("none", E0_tr, E0_te, E0_te)

    # reference: the same Steerer on the final embeddings (the main benchmark's representation protocol)
    muL, UL = pca_basis(E0_tr, cfg["pca"])
    Ztr, Zte = (E0_tr - muL) @ UL, (E0_te - muL) @ UL
    st_out = js.Steerer(intervention="affirmative", form="symmetric", map="align").fit(Ztr, ytr, atr)
    def back(E0, Z, Zs):  # the steered PCA coordinates back in embedding space (the complement is kept)
        return E0 + (np.asarray(Zs) - Z) @ UL.T

    downstream("EF affirmative/symmetric [align] on the output", back(E0_tr, Ztr, st_out.transform(Ztr, atr)),
               back(E0_te, Zte, st_out.transform(Zte, ate)), back(E0_te, Zte, st_out.transform(Zte, ahat)))

    # 1) pooled states after block `layer` (padding excluded), a Steerer on their top-p principal subspace
    t0 = time.perf_counter()
    H_tr = _pooled(*encoder.hidden_states(S_tr, batch_size=cfg["batch_size"], layers=(layer,)))[0]
    muH, UH = pca_basis(H_tr, p)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        st = js.Steerer(intervention="affirmative", form="symmetric", map="align").fit((H_tr - muH) @ UH, ytr, atr)
    lifted = st.group_map_.lift(jnp.asarray(UH), jnp.asarray(muH))
    A_full, b_full = np.asarray(lifted.A, np.float64), np.asarray(lifted.b, np.float64)
    fit_info = {"kl": float(st.solution_.kl), "converged": bool(np.all(np.asarray(st.solution_.converged))),
                "seconds": round(time.perf_counter() - t0, 1), "warnings": [str(w.message) for w in caught],
                "layer_state_norm": float(np.mean(np.linalg.norm(H_tr, axis=1)))}
    log(f"  inside: Steerer on block-{layer} pooled states: KL {fit_info['kl']:.4f} nats, "
        f"converged {fit_info['converged']} ({fit_info['seconds']} s)")

    def encode_steered(groups_tr, groups_te, groups_hat):
        kw = dict(batch_size=cfg["batch_size"])
        return (np.asarray(encoder.encode(S_tr, a=groups_tr, **kw), np.float64),
                np.asarray(encoder.encode(S_te, a=groups_te, **kw), np.float64),
                np.asarray(encoder.encode(S_te, a=groups_hat, **kw), np.float64))

    frozen = jsn.Steer(d, 2, A=A_full.astype(np.float32), b=b_full.astype(np.float32), trainable=False)
    jsn.insert(model, where, frozen)
    try:
        Etr_f, Ete_f, Ehat_f = encode_steered(atr, ate, ahat)
        # check: the steered pooled state at the layer is exactly the map of the unsteered one (affine map)
        H_chk = _pooled(*encoder.hidden_states(S_tr[:64], layers=(layer,), a=atr[:64]))[0]
        want = np.einsum("nij,nj->ni", A_full[atr[:64]], H_tr[:64]) + b_full[atr[:64]]
        fit_info["pooled_map_error"] = float(np.max(np.abs(H_chk - want)) / np.max(np.abs(want)))
        downstream(f"frozen Steer after block {layer}", Etr_f, Ete_f, Ehat_f, extra={"steerer": fit_info})
    finally:
        jsn.remove(model, where)

    # 2) fine-tune only a trainable copy of the Steer end to end
    steer = jsn.Steer(d, 2, A=A_full.astype(np.float32), b=b_full.astype(np.float32), trainable=True)
    jsn.insert(model, where, steer)
    try:
        ft = _finetune(model, encoder, S_tr, ytr, atr, E0_tr, mu0, U0, cfg, log, nnx=nnx, optax=optax,
                       losses=losses, jsn=jsn, sentence_embedding=sentence_embedding)
        Etr_t, Ete_t, Ehat_t = encode_steered(atr, ate, ahat)
        moved = float(np.max(np.abs(np.asarray(steer.A[...]) - A_full)))
        downstream(f"fine-tuned Steer after block {layer}", Etr_t, Ete_t, Ehat_t,
                   extra={"finetune": dict(ft, max_abs_change_A=moved)})
    finally:
        jsn.remove(model, where)
    return {"n_train": int(len(tr)), "n_test": int(len(te)), "layer": layer, "where": where, "p": p,
            "gap_pca": int(U0.shape[1]),
            "probe_accuracy": float(np.mean(ahat == ate)), "methods": results,
            "seconds": round(time.perf_counter() - t_start, 1)}


def _finetune(model, encoder, S_tr, ytr, atr, E0_tr, mu0, U0, cfg, log, *, nnx, optax, losses, jsn,
              sentence_embedding) -> dict:
    """Adam on the Steer's parameters only: ``ideal_gap(PCA(e)) + mu · (1 − cos(e, e_unsteered))``."""
    STEER = nnx.All(nnx.Param, nnx.PathContains("steer"))
    ids, mask = encoder.batch(S_tr)  # one padded length (the bucket of the longest training sentence)
    ids, mask = jnp.asarray(ids), jnp.asarray(mask)
    e0 = jnp.asarray(E0_tr, jnp.float32)
    muj, Uj = jnp.asarray(mu0, jnp.float64), jnp.asarray(U0, jnp.float64)
    q = _cell_weights(ytr, atr)
    cells = [np.flatnonzero((ytr == i) & (atr == g)) for i in range(2) for g in range(2)]
    per = max(2, int(cfg["inside_batch"]) // 4)
    # Balanced batches (every class×group cell gets `per` rows), weighted back to the training frequencies.
    # These are importance weights, not frequencies: ddof=0, since fit_family divides a cell's weighted
    # scatter by (Σw − ddof), which a rare cell's total weight (< 1 at mean-1 weights) would make negative.
    w_cell = (q.reshape(-1) / 0.25)
    mu_cos = float(cfg["inside_mu"])
    gap_kw = dict(num_classes=2, num_groups=2, intervention="affirmative", form="symmetric", reference=MALE, ddof=0)
    pooling, normalize = encoder.pooling, encoder.normalize

    def features(m, idb, mb, ab):
        with jsn.groups(ab):  # entered inside the traced function: the ids are a tracer of this step
            e = sentence_embedding(m, idb, mb, pooling=pooling, normalize=normalize)
        return e, (e.astype(jnp.float64) - muj) @ Uj

    @nnx.jit
    def cold(m, idb, mb, yb, ab, wb):
        _, h = features(m, idb, mb, ab)
        return losses.ideal_gap(h, yb, ab, sample_weight=wb, return_solution=True, **gap_kw)

    @nnx.jit
    def step(m, opt, idb, mb, yb, ab, wb, e0b, warm):
        def loss_fn(m):
            e, h = features(m, idb, mb, ab)
            gap, sol = losses.ideal_gap(h, yb, ab, sample_weight=wb, warm_start=warm, return_solution=True,
                                        max_iter=2, **gap_kw)
            dist = jnp.mean(1.0 - jnp.sum(e * e0b, axis=-1) / (jnp.linalg.norm(e, axis=-1) * jnp.linalg.norm(e0b, axis=-1)))
            return gap + mu_cos * dist, (gap, dist, sol)

        (_, (gap, dist, sol)), grads = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, STEER), has_aux=True)(m)
        opt.update(m, grads)
        return gap, dist, sol

    opt = nnx.Optimizer(model, optax.adam(float(cfg["inside_lr"])), wrt=STEER)
    rng = np.random.default_rng(0)
    history, times = [], []
    warm = None
    skipped = 0
    for it in range(int(cfg["inside_steps"])):
        rows = np.concatenate([rng.choice(c, size=per, replace=len(c) < per) for c in cells])
        code = 2 * ytr[rows] + atr[rows]
        wb = jnp.asarray(w_cell[code] / np.mean(w_cell[code]))
        yb, ab = jnp.asarray(ytr[rows]), jnp.asarray(atr[rows])
        idb, mb = ids[rows], mask[rows]
        if warm is None:
            g0, warm = cold(model, idb, mb, yb, ab, wb)
            log(f"    fine-tune: cold solve on the first minibatch: gap {float(g0):.4f} nats, converged "
                f"{bool(warm.converged)}")
        t0 = time.perf_counter()
        gap, dist, sol = step(model, opt, idb, mb, yb, ab, wb, e0[rows], warm)
        gap, dist = float(gap), float(dist)
        times.append(time.perf_counter() - t0)
        if np.isfinite(gap) and bool(np.all(np.isfinite(np.asarray(sol.maps.A)))):
            warm = sol
        else:
            skipped += 1
        history.append({"gap": gap, "one_minus_cos": dist})
        if it % max(1, int(cfg["inside_steps"]) // 10) == 0 or it == int(cfg["inside_steps"]) - 1:
            log(f"    fine-tune step {it:4d}: batch gap {gap:.4f} nats, 1 − cos {dist:.5f} ({times[-1]:.2f} s)")
    first = lambda key: float(np.mean([h[key] for h in history[:10]]))  # noqa: E731
    last = lambda key: float(np.mean([h[key] for h in history[-10:]]))  # noqa: E731
    return {"steps": len(history), "batch": 4 * per, "lr": float(cfg["inside_lr"]), "mu": mu_cos,
            "batch_gap_first10": first("gap"), "batch_gap_last10": last("gap"),
            "one_minus_cos_first10": first("one_minus_cos"), "one_minus_cos_last10": last("one_minus_cos"),
            "step_seconds_median": float(np.median(times[1:])) if len(times) > 1 else None,
            "first_step_seconds": float(times[0]), "padded_length": int(ids.shape[1]), "skipped": skipped,
            "history": history}


# -- outputs -------------------------------------------------------------------------------------------


MAIN_METHODS = ("none", "reweighing", "mean matching", "MiMiC", "LEACE")


def markdown(res) -> str:
    cfg = res["config"]
    summ = res["summary"]
    seeds = cfg["seeds"]
    emb = res["embedding"]
    env = res.get("environment", {})
    lines = [
        "# Steering sentence embeddings of Adult profiles (a Bios-style benchmark on real records)",
        "",
        f"`{res.get('command', 'python -m benchmarks.experiments.llm_steering')}`",
        "",
        f"n = {res['n']} records ({res['groups']['Female']} women, {res['groups']['Male']} men) of UCI Adult "
        "(train and test files pooled, rows with missing values dropped), each written as a biography-like "
        "profile (sex only through gendered words; occupation and income left out), embedded with "
        f"`load_encoder(\"{emb['model']}\")` (d = {emb['dim']}, {res['tokens_mean']:.1f} tokens per sentence on "
        f"average; {'read from the cache' if emb['cached'] else '%.0f s to embed' % emb['seconds']}). "
        f"{seeds} random {1 - cfg['test']:.0%}/{cfg['test']:.0%} train/test splits stratified by (occupation, "
        f"income, sex); mean ± sd over the splits. Features: top {cfg['pca']} principal components of the "
        "training embeddings; classifier: standardisation + logistic regression (scikit-learn, lbfgs, C = 1).",
        "",
        "Example sentences:",
        "",
    ]
    lines += [f"> {s}" for s in res["sentence_examples"][:2]]
    lines += [
        "",
        "Every map is fitted on the training split and applied to training and test embeddings (the "
        "representation protocol). EF rows: `Steerer(intervention, form)` fitted with the target labels, "
        "label-free group map in brackets, classifier trained with the ideal family's class-balance weights "
        "`Steerer.sample_weight` (the `unweighted` row drops them; the `class-balance weights only` row keeps "
        "the weights and drops the map; `reweighing` weights rows so that class and group are independent; "
        "ThresholdOptimizer: fairlearn's group-specific randomised thresholds on the unsteered logistic "
        "regression, income only). **known**: the test rows are steered with "
        "their true sex; **predicted**: with the sex predicted by a logistic-regression probe on the unsteered "
        f"384-d embeddings (test accuracy {pm(summ['probe_accuracy'])}"
        + ("; it made no error on any split, so the predicted-group tables equal the known-group ones"
           if summ["probe_accuracy"]["mean"] is not None and summ["probe_accuracy"]["mean"] >= 1.0 else "")
        + "); training rows always use the true sex, and the fairness metrics always do. RMS TPR gap: `√(mean_y (TPR_y,female − TPR_y,male)²)` over "
        "the classes (`jaxsteer.metrics.rms_tpr_gap`); ΔDP, ΔEO: demographic-parity and equal-opportunity "
        "differences (`jaxsteer.metrics`). KL: the Steerer's distance to its nearest ideal family (nats).",
    ]
    if res.get("occupation_left_out"):
        lines += ["", f"Occupation: {len(res['classes'].get('occupation', []))} classes; left out "
                  f"{', '.join(res['occupation_left_out'])} (no woman, or fewer than {cfg['min_cell_rows']} rows "
                  "in a group: an empty class×group cell cannot be steered). Its rows stay in the income target."]
    lines += ["", "EF variants run: " + "; ".join(f"{t}: {', '.join(v)}" for t, v in cfg["ef"].items()
                                                  if t in cfg["targets"]) +
              ". The others are left out for solver time at this d (see the notes)."]
    for target in cfg["targets"]:
        for proto in ("known", "predicted"):
            binary = target == "income"
            lines += ["", f"## {target}, group at test time: {proto}", ""]
            head = "| method | accuracy | RMS TPR gap |" + (" ΔDP | ΔEO |" if binary else "") + " KL |"
            lines += [head, "|---|---:|---:|" + ("---:|---:|" if binary else "") + "---:|"]
            for m, e in summ[target].items():
                s = e[proto]
                row = f"| {m} | {pm(s['accuracy'])} | {pm(s['rms_tpr_gap'])} |"
                if binary:
                    row += f" {pm(s['dp'])} | {pm(s['eo'])} |"
                row += f" {pm(e.get('kl'), 3) if 'kl' in e else ''} |"
                lines.append(row)
    if "occupation" in cfg["targets"]:
        classes = res["classes"]["occupation"]
        occ = summ["occupation"]
        shown = [m for m in occ if m in MAIN_METHODS or (m.startswith("EF") and "unweighted" not in m)]
        share = res.get("female_share", {})
        lines += ["", "## occupation: per-class TPR gap TPR_female − TPR_male (known groups, mean over splits)", "",
                  "| occupation | % women | " + " | ".join(shown) + " |",
                  "|---|---:|" + "---:|" * len(shown)]
        for i, c in enumerate(classes):
            cells = []
            for m in shown:
                g = occ[m]["known"]["tpr_gaps"][i]
                cells.append("—" if g["mean"] is None else f"{g['mean']:+.3f}")
            lines.append(f"| {c} | {100 * share.get(c, float('nan')):.1f} | " + " | ".join(cells) + " |")
    ins = res.get("inside")
    if ins:
        lines += inside_markdown(ins, cfg)
    lines += ["", "## Notes", ""] + [f"* {x}" for x in res.get("notes", [])]
    cpu = res.get("cpu_seconds")
    lines += ["", f"Total run time {res.get('seconds', float('nan')):.0f} s wall"
              + (f" ({cpu:.0f} s of CPU time, all threads)" if cpu is not None else "")
              + f" on {env.get('cpus', '?')} CPU core(s) shared with other jobs, this one at nice 15 "
              f"({env.get('machine', '')}; jax {env.get('jax', '')}, flax "
              f"{env.get('flax', '')}, scikit-learn {env.get('sklearn', '')}).", ""]
    return "\n".join(lines)


def inside_markdown(ins, cfg) -> list[str]:
    meth = ins["methods"]
    lines = [
        "", f"## Steering inside the network (income; a Steer after block {ins['layer']} of the encoder)", "",
        f"A stratified subsample: {ins['n_train']} training / {ins['n_test']} test sentences (one split; sex "
        f"probe accuracy {ins['probe_accuracy']:.4f}). `jaxsteer.nn.insert(encoder.model, \"{ins['where']}\", "
        "steer)`; the group ids reach it through `encoder.encode(..., a=a)`. The Steerer (affirmative, "
        f"symmetric, `align` map, reference Male) is fitted on the mean-pooled block-{ins['layer']} states "
        f"(padding excluded) projected on their top {ins['p']} principal components, and lifted to the full "
        "width (`x ↦ x + U((A − I)Uᵀ(x − μ) + b)`: the complement of the subspace is kept). Downstream: PCA "
        f"({cfg['pca']}) + logistic regression on the final sentence embeddings of each row's model; test gap: "
        f"`ideal_gap` (affirmative, symmetric, reference Male) of the test embeddings on the top "
        f"{ins['gap_pca']} principal components of the unsteered training embeddings; "
        "cos: mean cosine to the unsteered test embeddings. Values: known / predicted groups at test time.",
        "",
        "| representation | accuracy | RMS TPR gap | ΔDP | ΔEO | test gap (nats) | cos |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in meth.items():
        kn, pr = r["known"], r["predicted"]
        lines.append(f"| {name} | {kn['accuracy']:.4f} / {pr['accuracy']:.4f} | {kn['rms_tpr_gap']:.4f} / "
                     f"{pr['rms_tpr_gap']:.4f} | {kn['dp']:.4f} / {pr['dp']:.4f} | {kn['eo']:.4f} / {pr['eo']:.4f} | "
                     f"{r['test_gap']:.4f} | {r['cosine_to_unsteered']:.4f} |")
    fz = next((r["steerer"] for r in meth.values() if "steerer" in r), None)
    ft = next((r["finetune"] for r in meth.values() if "finetune" in r), None)
    if fz:
        lines += ["", f"Steerer at the layer: KL to the nearest ideal family {fz['kl']:.4f} nats, converged "
                  f"{fz['converged']}, {fz['seconds']} s (hidden states + fit); mean norm of the pooled layer "
                  f"states {fz['layer_state_norm']:.2f}; check: the pooled layer state of the steered model equals "
                  f"the fitted map of the unsteered one to a relative error of {fz['pooled_map_error']:.1e}."]
    if ft:
        lines += ["", f"Fine-tuning: {ft['steps']} Adam steps (lr {ft['lr']:g}) on the Steer's parameters only "
                  f"(`nnx.Optimizer(..., wrt=nnx.All(nnx.Param, nnx.PathContains('steer')))`), balanced minibatches "
                  f"of {ft['batch']} (weighted back to the training class×group frequencies), padded to "
                  f"{ft['padded_length']} tokens; loss `ideal_gap(PCA_{ins['gap_pca']}(e)) + {ft['mu']:g}·(1 − cos(e, "
                  "e_unsteered))` "
                  f"(affirmative, symmetric, warm-started, 2 Newton steps per step). Minibatch gap "
                  f"{ft['batch_gap_first10']:.4f} → {ft['batch_gap_last10']:.4f} nats, 1 − cos "
                  f"{ft['one_minus_cos_first10']:.5f} → {ft['one_minus_cos_last10']:.5f} (means of the first and last "
                  f"10 steps); largest change of an entry of A {ft['max_abs_change_A']:.4f}; median step "
                  f"{ft['step_seconds_median']:.2f} s (first step, with compilation, {ft['first_step_seconds']:.1f} s); "
                  f"{ft['skipped']} steps with a non-finite solve."]
    lines += ["", f"Inside-the-network section: {ins['seconds']:.0f} s."]
    return lines


def _config(args) -> dict:
    ef = dict(DEFAULT_EF)
    if args.ef_income is not None:
        ef["income"] = tuple(v for v in args.ef_income.split(",") if v)
    if args.ef_occupation is not None:
        ef["occupation"] = tuple(v for v in args.ef_occupation.split(",") if v)
    for t, variants in ef.items():
        for v in variants:
            parts = v.split("/")
            if len(parts) != 2 or parts[0] not in ("affirmative", "all") or parts[1] not in ("symmetric", "affine"):
                raise SystemExit(f"--ef-{t}: {v!r} is not intervention/form (e.g. affirmative/symmetric)")
    maps = tuple(v for v in args.maps.split(",") if v)
    for m in maps:
        if m not in EF_MAPS:
            raise SystemExit(f"--maps: {m!r} is not one of {EF_MAPS}")
    targets = tuple(v for v in args.targets.split(",") if v)
    for t in targets:
        if t not in TARGETS:
            raise SystemExit(f"--targets: {t!r} is not one of {TARGETS}")
    cache = None if args.cache in ("", "none") else (args.cache or default_cache())
    return dict(seeds=args.seeds, pca=args.pca, test=0.3, targets=targets, ef=ef, maps=maps, cache=cache,
                batch_size=args.batch_size, progress=not args.no_progress, lr_max_iter=1000, min_cell_rows=10,
                inside=args.inside, layer=args.layer, inside_n=args.inside_n, inside_steps=args.inside_steps,
                inside_batch=args.inside_batch, inside_lr=args.inside_lr, inside_mu=args.inside_mu,
                inside_gap_pca=args.inside_gap_pca)


NOTES = [
    "Bios itself is not available here; the records are Adult's, written as profiles. Sex is as easy to read "
    "from these sentences as from a biography (pronouns in every sentence): the probe is almost perfect, so "
    "the predicted-group protocol differs little from the known-group one.",
    "The occupation is not in the text, so it must be inferred from education, employer type, hours, age, "
    "household and gender: occupation accuracy is low (13 classes, the majority class is about 13%), and "
    "the TPR gaps mostly reflect how the classifier uses the gendered part of the embedding together with "
    "the strongly sex-segregated occupations (e.g. Adm-clerical, Craft-repair).",
    "EF variants: all but all/affine. Solver time decided that: at d = 64 the affine form of `all` has many "
    "nearly flat directions (rotations of a group's map that barely change the KL), so its joint Newton–CG "
    "phase needs hundreds of CG steps per Newton step. Two income fits were measured in a first attempt of "
    "this run (2 cores shared with other jobs): split 0 took 302 s (KL 0.0458 nats; posterior/align/moment "
    "RMS TPR gap 0.090/0.111/0.109, ΔEO 0.125/0.157/0.154) and split 1 1,122 s (KL 0.0490; RMS 0.062/0.101/"
    "0.086), so it was left out of the 5-split loop; with 13 occupation classes it would take far longer. "
    "all/symmetric takes 10–50 s per fit with the matrix-free joint phase (it had not finished in 10 "
    "minutes with block descent alone). Per-fit times, convergence and residuals are in the JSON "
    "(`fit_seconds`, `converged`, `residual`), with any solver warnings.",
    "Steering inside the network: the ideal gap (affirmative, symmetric) is zero when a *group-aware* Bayes "
    "rule is fair; the downstream classifier is group-blind, so lowering the gap need not lower its ΔEO "
    "(`adult_end_to_end.md`, rows (iii), shows the same with a Flax MLP). The cosine term anchors the "
    "embeddings to the *unsteered* ones, so fine-tuning also pulls the Steer back towards the identity. "
    "One split of a few thousand sentences: read the inside table as a demonstration, not a measurement.",
    "Run times: wall-clock times (total and per method in the JSON) include periods when this process was "
    "stopped or starved by other jobs on the machine; the CPU time is the better measure. Embedding the "
    "45,222 sentences takes about 4 minutes at the 193 sentences/s of `encoder_throughput.md` on an idle "
    "2-core machine (a cached run reads them in a second).",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=None, help="stratified subsample of the 45,222 records (default all)")
    ap.add_argument("--seeds", type=int, default=5, help="random train/test splits (default 5)")
    ap.add_argument("--pca", type=int, default=64, help="principal components of the embeddings (0: all 384)")
    ap.add_argument("--out", default=os.path.join("benchmarks", "results", STEM),
                    help="output path without extension (default benchmarks/results/llm_steering)")
    ap.add_argument("--cache", default=None, help="embedding cache folder (default ~/.cache/jaxsteer/embeddings; "
                                                  "'none': no cache)")
    ap.add_argument("--targets", default="income,occupation")
    ap.add_argument("--ef-income", default=None, help="EF variants for income, comma-separated intervention/form "
                                                      f"(default {','.join(DEFAULT_EF['income'])})")
    ap.add_argument("--ef-occupation", default=None, help="EF variants for occupation "
                                                          f"(default {','.join(DEFAULT_EF['occupation'])})")
    ap.add_argument("--maps", default=",".join(EF_MAPS), help="label-free EF maps (default posterior,align,moment)")
    ap.add_argument("--batch-size", type=int, default=64, help="encoder batch size")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar while embedding")
    ap.add_argument("--inside", action=argparse.BooleanOptionalAction, default=True,
                    help="the steering-inside-the-network section (default on; --no-inside to skip)")
    ap.add_argument("--layer", type=int, default=3, help="insert the Steer after this block (1-based; default 3 of 6)")
    ap.add_argument("--inside-n", type=int, default=3000, help="sentences of the inside section (default 3000)")
    ap.add_argument("--inside-steps", type=int, default=100, help="fine-tuning steps (default 100)")
    ap.add_argument("--inside-batch", type=int, default=64, help="fine-tuning minibatch (default 64)")
    ap.add_argument("--inside-lr", type=float, default=1e-4, help="Adam learning rate of the Steer (default 1e-4)")
    ap.add_argument("--inside-mu", type=float, default=10.0, help="weight of 1 − cos to the unsteered embeddings")
    ap.add_argument("--inside-gap-pca", type=int, default=16,
                    help="principal components of the final embeddings on which the ideal gap is taken (default 16)")
    ap.add_argument("--model", default=MODEL, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.seeds < 1:
        ap.error("--seeds: must be >= 1")
    cfg = _config(args)
    t0, c0 = time.perf_counter(), time.process_time()
    records = load_records()
    rows = np.arange(len(records["sex"]))
    if args.n is not None and args.n < len(rows):
        rows = stratified_subset(strata(records), args.n / len(rows), np.random.default_rng(0))
        records = take(records, rows)
    cfg["rows"] = rows
    from jaxsteer.models import load_encoder

    import sklearn

    log = lambda s: print(s, flush=True)  # noqa: E731
    encoder = load_encoder(args.model)
    res = run(records, encoder, dict(cfg, inside=False), log=log)  # the inside section comes after a first write
    sentences, E = res.pop("_data")
    res["config"]["inside"] = cfg["inside"]
    res["command"] = "python -m benchmarks.experiments.llm_steering" + (
        " " + " ".join(argv if argv is not None else sys.argv[1:]) if (argv or sys.argv[1:]) else "")
    res["notes"] = NOTES
    res["environment"] = environment(sklearn=sklearn.__version__)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)

    def write():
        res["seconds"] = round(time.perf_counter() - t0, 1)
        res["cpu_seconds"] = round(time.process_time() - c0, 1)  # all threads of this process
        with open(args.out + ".json", "w") as fh:
            json.dump(res, fh, indent=1)
        md = markdown(res)
        with open(args.out + ".md", "w") as fh:
            fh.write(md)
        return md

    write()
    if cfg["inside"]:
        res["inside"] = inside_network(records, sentences, encoder, E, cfg, log)
    md = write()
    print(md)
    print(f"wrote {args.out}.json and {args.out}.md in {res['seconds']:.0f} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
