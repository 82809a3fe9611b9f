"""The Bios-style LLM steering benchmark (benchmarks/experiments/llm_steering.py): the profile sentences,
the TPR-gap metrics against hand computations, the embedding cache, and an end-to-end smoke run of the
benchmark's core function (every method, both group protocols, and the Steer inside the network with its
fine-tuning) on a tiny random-weight encoder, so that the script cannot rot. No weights package needed."""

import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from fakes import HashTokenizer
from flax import nnx

_ROOT = str(Path(__file__).resolve().parents[1])  # benchmarks/ is a top-level package of the repo
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks.experiments import llm_steering as L  # noqa: E402
from jaxsteer import nn as jsn  # noqa: E402
from jaxsteer.models import BertConfig, BertEncoder, SentenceEncoder  # noqa: E402

OCCUPATION_WORDS = ("adm clerical", "armed forces", "craft repair", "exec managerial", "farming fishing",
                    "handlers cleaners", "machine op inspct", "other service", "priv house serv",
                    "prof specialty", "protective serv", "sales", "tech support", "transport moving")


@pytest.fixture(scope="module")
def records():
    return L.load_records()


def _words(s):
    return set(re.findall(r"[a-z]+", s.lower()))


# -- sentences ---------------------------------------------------------------------------------------------


def test_records_are_the_clean_adult_rows(records):
    assert len(records["sex"]) == 45222
    assert set(records["sex"].tolist()) == {"Female", "Male"}


def test_gendered_words_and_no_sex_field(records):
    rows = np.random.default_rng(0).choice(len(records["sex"]), 3000, replace=False)
    sub = L.take(records, rows)
    sentences = L.profile_sentences(sub, rows)
    for s, sex, rel in zip(sentences, sub["sex"].tolist(), sub["relationship"].tolist()):
        w = _words(s)
        assert not w & {"sex", "female", "male", "gender"}, s
        if sex == "Female":
            assert {"she", "woman"} <= w and not w & {"he", "his", "man", "him"}, s
        else:
            assert {"he", "man"} <= w and not w & {"she", "her", "woman"}, s
        if rel in ("Husband", "Wife"):  # the spouse word follows the sex
            assert ("husband" if sex == "Female" else "wife") in w, s
    widow = [i for i in range(len(rows)) if sub["marital-status"][i] == "Widowed"]
    assert widow and all(("widow" if sub["sex"][i] == "Female" else "widower") in _words(sentences[i]) for i in widow)


def test_occupation_and_income_left_out(records):
    sentences = L.profile_sentences(records)
    assert len(sentences) == len(records["sex"])
    for s in sentences[::7]:
        low = s.lower().replace("-", " ")
        assert not any(o in low for o in OCCUPATION_WORDS), s
        assert "50k" not in low and "income" not in low and "50,000" not in s, s
    # the same person with another occupation and income is described by the same sentence
    r = {c: v[0] for c, v in records.items()}
    other = dict(r, occupation="Tech-support", income=">50K" if r["income"] == "<=50K" else "<=50K")
    assert L.profile_sentence(r, 0) == L.profile_sentence(other, 0)


def test_sentences_are_deterministic_with_varied_templates(records):
    sub = L.take(records, np.arange(40))
    a, b = L.profile_sentences(sub), L.profile_sentences(sub)
    assert a == b
    r = {c: v[5] for c, v in records.items()}
    by_row = [L.profile_sentence(r, i) for i in range(8)]
    assert len(set(by_row[:4])) == 4  # four templates
    assert by_row[:4] == by_row[4:]  # chosen by row number modulo 4
    assert str(r["age"]) in by_row[0] and str(r["hours-per-week"]) in by_row[0]


def test_stratified_split_partitions_every_stratum(records):
    sub = L.take(records, np.arange(3000))
    keys = L.strata(sub)
    tr, te = L.stratified_split(keys, 0.3, 0)
    assert np.intersect1d(tr, te).size == 0 and len(tr) + len(te) == 3000
    for s in np.unique(keys):
        n = np.sum(keys == s)
        assert abs(np.sum(keys[te] == s) - 0.3 * n) < 1 + 1e-9
    tr2, _ = L.stratified_split(keys, 0.3, 0)
    assert np.array_equal(tr, tr2)


# -- metrics -----------------------------------------------------------------------------------------------


def test_rms_tpr_gap_against_a_hand_computation():
    # class 0: women 3/4 right, men 1/2 -> +0.25; class 1: women 2/2, men 1/4 -> +0.75;
    # class 2 only among men -> no gap (left out of the mean)
    y = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2]
    a = [0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1]
    p = [0, 0, 0, 1, 0, 2, 1, 1, 1, 0, 0, 2, 2, 0, 2]
    s = L.scores(y, p, a, 3)
    gaps = L.signed_tpr_gaps(y, p, a, 3)
    np.testing.assert_allclose(gaps[:2], [0.25, 0.75])
    assert math.isnan(gaps[2]) and s["tpr_gaps"] == [0.25, 0.75, None]
    assert s["rms_tpr_gap"] == pytest.approx(math.sqrt((0.25**2 + 0.75**2) / 2), abs=1e-12)
    assert s["accuracy"] == pytest.approx(9 / 15)
    assert "eo" not in s
    # binary: ΔEO is |gap of class 1|, the RMS covers both classes (class 0's gap is the TNR gap)
    y2 = [1, 1, 1, 1, 0, 0, 1, 1, 0, 0]
    a2 = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    p2 = [1, 0, 0, 0, 0, 1, 1, 1, 0, 0]
    s2 = L.scores(y2, p2, a2, 2)
    # TPR women 1/4, men 1 -> −0.75; TNR women 1/2, men 1 -> −0.5; selection women 2/6, men 2/4
    assert s2["tpr_gaps"] == pytest.approx([-0.5, -0.75])
    assert s2["eo"] == pytest.approx(0.75) and s2["dp"] == pytest.approx(0.5 - 1 / 3)
    assert s2["rms_tpr_gap"] == pytest.approx(math.sqrt((0.25 + 0.5625) / 2))


# -- the benchmark on a tiny random-weight encoder --------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_encoder():
    cfg = BertConfig.tiny(max_position_embeddings=96)
    model = BertEncoder(cfg, rngs=nnx.Rngs(0))
    return SentenceEncoder(model, HashTokenizer(cfg.vocab_size), max_seq_length=96, length_buckets=(64,),
                           name="tiny-random")


def test_embedding_cache(tmp_path, tiny_encoder):
    sentences = ["she is a woman", "he is a man", "she works"]
    E1, i1 = L.embed(sentences, tiny_encoder, cache=str(tmp_path), progress=False, log=lambda s: None)
    E2, i2 = L.embed(sentences, tiny_encoder, cache=str(tmp_path), progress=False, log=lambda s: None)
    assert not i1["cached"] and i2["cached"] and i1["path"] == i2["path"]
    np.testing.assert_array_equal(E1, E2)
    _, i3 = L.embed(sentences[:2], tiny_encoder, cache=str(tmp_path), progress=False, log=lambda s: None)
    assert not i3["cached"] and i3["path"] != i1["path"]


def test_end_to_end_smoke(records, tiny_encoder):
    rows = L.stratified_subset(L.strata(records), 700 / 45222, np.random.default_rng(0))
    sub = L.take(records, rows)
    # one EF fit (occupation; income runs the baselines): the test is dominated by XLA compilations
    cfg = dict(seeds=1, pca=6, test=0.3, targets=L.TARGETS, ef={"income": (), "occupation": ("affirmative/symmetric",)},
               maps=("posterior", "align"), cache=None, batch_size=64, progress=False, lr_max_iter=200,
               min_cell_rows=6, rows=rows, inside=True, layer=1, inside_n=400, inside_steps=3, inside_batch=16,
               inside_lr=1e-3, inside_mu=1.0, inside_gap_pca=4)
    model = tiny_encoder.model
    before = nnx.state(model, nnx.Param)
    res = L.run(sub, tiny_encoder, cfg, log=lambda s: None)
    # the model is left exactly as it was (the inserted Steers are removed)
    assert not isinstance(model.encoder.layers[0], jsn.Steered)
    after = nnx.state(model, nnx.Param)
    for x, y in zip(jax_leaves(before), jax_leaves(after)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    seed = res["per_seed"][0]
    assert 0.5 <= seed["probe_accuracy"] <= 1.0
    k_occ = len(res["classes"]["occupation"])
    assert k_occ >= 2 and "Armed-Forces" in res["occupation_left_out"]
    baseline_rows = {"none", "reweighing", "mean matching", "MiMiC", "LEACE"}
    ef_rows = {"EF affirmative/symmetric [posterior]", "EF affirmative/symmetric [align]",
               "EF affirmative/symmetric [posterior], unweighted", "EF affirmative/symmetric, class-balance weights only"}
    thresholds = {"ThresholdOptimizer, TPR parity", "ThresholdOptimizer, equalized odds"}
    assert set(seed["targets"]["income"]) == baseline_rows | thresholds
    assert set(seed["targets"]["occupation"]) == baseline_rows | ef_rows
    occ = seed["targets"]["occupation"]
    # the weights-only row is the unsteered classifier retrained with the EF weights: a different model
    assert occ["EF affirmative/symmetric, class-balance weights only"]["known"] != occ["none"]["known"]
    for target, k in (("income", 2), ("occupation", k_occ)):
        methods = seed["targets"][target]
        for name, r in methods.items():
            for proto in ("known", "predicted"):
                s = r[proto]
                assert 0.0 <= s["accuracy"] <= 1.0 and 0.0 <= s["rms_tpr_gap"] <= 1.0, (target, name)
                assert len(s["tpr_gaps"]) == k
                if k == 2:
                    assert 0.0 <= s["eo"] <= 1.0 and 0.0 <= s["dp"] <= 1.0
                    assert s["eo"] == pytest.approx(abs(s["tpr_gaps"][1]))
        assert methods["none"]["known"] == methods["none"]["predicted"]
    assert math.isfinite(seed["targets"]["occupation"]["EF affirmative/symmetric [align]"]["kl"])
    summ = res["summary"]["occupation"]["EF affirmative/symmetric [align]"]["known"]
    assert len(summ["tpr_gaps"]) == k_occ and summ["accuracy"]["sd"] == 0.0
    ins = res["inside"]
    assert ins["where"] == "encoder.layers.0"
    names = list(ins["methods"])
    assert names[0] == "none" and any(n.startswith("frozen Steer") for n in names)
    frozen = next(v for n, v in ins["methods"].items() if n.startswith("frozen Steer"))
    assert frozen["steerer"]["pooled_map_error"] < 1e-4  # the pooled layer state is steered exactly as fitted
    tuned = next(v for n, v in ins["methods"].items() if n.startswith("fine-tuned"))
    ft = tuned["finetune"]
    assert ft["steps"] == 3 and ft["skipped"] == 0 and ft["max_abs_change_A"] > 0
    assert all(math.isfinite(h["gap"]) for h in ft["history"])
    for v in ins["methods"].values():
        assert math.isfinite(v["test_gap"]) and 0.0 < v["cosine_to_unsteered"] <= 1.0 + 1e-9
    md = L.markdown(dict(res, environment={}, command="smoke"))
    assert "## income, group at test time: known" in md and "## occupation, group at test time: predicted" in md
    assert "per-class TPR gap" in md and "Steering inside the network" in md


def jax_leaves(state):
    import jax

    return jax.tree_util.tree_leaves(state)
