"""A small decoder-only transformer (Flax NNX) trained here on Adult biographies that end "... earns over/under 50K a year."

    python -m benchmarks.experiments.tiny_decoder [--quick] [--cache DIR]

No decoder weights can be installed on these machines, so the generative-steering experiment
(``generative_steering.py``) trains its own language model:

* **Text.** Every clean Adult record becomes the biography of ``llm_steering.profile_sentence`` (sex
  only through gendered words, no occupation, no income) followed by ``" She|He earns over|under 50K
  a year."`` with ``over`` for ``>50K``. The model must predict the word after ``earns`` from the
  biography: that position is the *slot*, the one that is steered.
* **Tokens.** A word-level vocabulary (:func:`tokenize`: lower-cased words, numbers such as ``15,024``
  and ``50k`` as single words, every other non-space character alone) of the training split's words
  that occur at least ``min_count`` times; the others become ``<unk>``. Sequences start with ``<bos>``
  and are right-padded with ``<pad>`` (causal attention: padding never influences a real token).
* **Model** (:class:`TinyDecoder`): learned token and position embeddings, ``layers`` pre-LayerNorm
  blocks (causal multi-head self-attention, GELU MLP, residual connections), a final LayerNorm and an
  untied unembedding. ``hidden(tokens, layer)`` returns the residual stream after ``layer`` blocks and
  ``finish(h, layer)`` runs the remaining blocks and the head, so a steering map can act in between
  (or be inserted with ``jaxsteer.nn.insert(model, f"blocks.{layer - 1}", steer)``).
* **Training.** Next-token cross-entropy on every real token (the slot's word has weight
  ``label_weight``, default 1: a plain language model), AdamW with warm-up and cosine decay, on the
  70% training split of ``llm_steering.stratified_split`` (strata: occupation, income, sex; seed 0).
  The weights are cached (npz keyed by a hash of the configuration and the text) so that the
  experiment trains once.
* **Quality gate** (:func:`quality_gate`, held-out 30%): ROC AUC of ``P("over")`` at the slot against
  the true income, next to a logistic regression on the raw Adult features the biography states
  (age, workclass, education, marital status, relationship, race, sex, capital gain and loss, hours,
  country) and one on all of Adult's features (occupation included, which the text leaves out).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import time
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from benchmarks.experiments import llm_steering as bios

PAD, BOS, UNK = "<pad>", "<bos>", "<unk>"
OVER, UNDER = "over", "under"
SLOT_WORD = "earns"
#: The fixed continuation after the over/under word: "50k a year ." (4 tokens).
CONTINUATION = ("50k", "a", "year", ".")

DEFAULTS = dict(d_model=64, heads=4, layers=3, mlp=4, min_count=3, steps=2000, batch=64, lr=3e-3,
                weight_decay=0.01, warmup=100, label_weight=1.0, seed=0, test=0.3, n=None)
QUICK = dict(DEFAULTS, steps=300, n=4000, d_model=32, layers=2)

_TOKEN = re.compile(r"\d[\d,]*k?|[a-z]+(?:'[a-z]+)?|\S")


def tokenize(text: str) -> list[str]:
    """Lower-cased words, numbers (``15,024``, ``50k``) as single words, other non-space characters alone."""
    return _TOKEN.findall(text.lower())


def biography(record, row: int) -> str:
    """``llm_steering.profile_sentence`` plus ``" She|He earns over|under 50K a year."``."""
    P = "She" if str(record["sex"]) == "Female" else "He"
    word = OVER if str(record["income"]) == ">50K" else UNDER
    return f"{bios.profile_sentence(record, row)} {P} {SLOT_WORD} {word} 50K a year."


def biographies(records, rows=None) -> list[str]:
    n = len(records["sex"])
    rows = np.arange(n) if rows is None else np.asarray(rows)
    cols = {c: records[c].tolist() for c in records}
    return [biography({c: cols[c][i] for c in cols}, rows[i]) for i in range(n)]


class Vocab:
    """Word ↔ id; ids 0, 1, 2 are ``<pad>``, ``<bos>``, ``<unk>``."""

    def __init__(self, words):
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, texts, min_count: int) -> "Vocab":
        counts = Counter(t for s in texts for t in tokenize(s))
        kept = sorted(w for w, c in counts.items() if c >= min_count)
        return cls([PAD, BOS, UNK] + kept)

    def __len__(self) -> int:
        return len(self.words)

    def id(self, word: str) -> int:
        return self.index.get(word, self.index[UNK])

    def encode(self, texts, max_len: int | None = None):
        """``tokens [n, T]`` int32 (``<bos>`` first, right-padded), ``lengths [n]``, ``slot [n]``.

        ``slot`` is the position of the last ``earns``: the model's output there is the distribution
        of the over/under word.
        """
        seqs = [[self.index[BOS]] + [self.id(t) for t in tokenize(s)] for s in texts]
        T = max(len(s) for s in seqs) if max_len is None else int(max_len)
        if max(len(s) for s in seqs) > T:
            raise ValueError(f"max_len: a sequence has {max(len(s) for s in seqs)} tokens, more than {T}.")
        tokens = np.zeros((len(seqs), T), np.int32)
        lengths = np.array([len(s) for s in seqs], np.int32)
        slot = np.zeros(len(seqs), np.int32)
        earns = self.index[SLOT_WORD]
        for r, s in enumerate(seqs):
            tokens[r, : len(s)] = s
            slot[r] = len(s) - 1 - s[::-1].index(earns)
        return tokens, lengths, slot


# -- the model -------------------------------------------------------------------------------------


class Block(nnx.Module):
    """Pre-LayerNorm transformer block: causal multi-head self-attention, then a GELU MLP."""

    def __init__(self, d: int, heads: int, mlp: int, *, rngs: nnx.Rngs):
        self.heads = heads
        self.ln1 = nnx.LayerNorm(d, rngs=rngs)
        self.qkv = nnx.Linear(d, 3 * d, rngs=rngs)
        self.proj = nnx.Linear(d, d, rngs=rngs)
        self.ln2 = nnx.LayerNorm(d, rngs=rngs)
        self.up = nnx.Linear(d, mlp * d, rngs=rngs)
        self.down = nnx.Linear(mlp * d, d, rngs=rngs)

    def __call__(self, h):
        B, T, d = h.shape
        H = self.heads
        q, k, v = jnp.split(self.qkv(self.ln1(h)), 3, axis=-1)
        q, k, v = (x.reshape(B, T, H, d // H) for x in (q, k, v))
        scores = jnp.einsum("bthe,bshe->bhts", q, k) / jnp.sqrt(d // H).astype(h.dtype)
        causal = jnp.tril(jnp.ones((T, T), bool))
        scores = jnp.where(causal, scores, jnp.finfo(scores.dtype).min)
        att = jnp.einsum("bhts,bshe->bthe", jax.nn.softmax(scores, axis=-1), v).reshape(B, T, d)
        h = h + self.proj(att)
        return h + self.down(jax.nn.gelu(self.up(self.ln2(h))))


class TinyDecoder(nnx.Module):
    """Token + position embeddings, ``layers`` :class:`Block` s in ``self.blocks``, final LayerNorm, unembedding."""

    def __init__(self, vocab_size: int, max_len: int, *, d_model=64, heads=4, layers=3, mlp=4, rngs: nnx.Rngs):
        self.tok = nnx.Embed(vocab_size, d_model, rngs=rngs)
        self.pos = nnx.Embed(max_len, d_model, rngs=rngs)
        self.blocks = nnx.List([Block(d_model, heads, mlp, rngs=rngs) for _ in range(layers)])
        self.ln_f = nnx.LayerNorm(d_model, rngs=rngs)
        self.unembed = nnx.Linear(d_model, vocab_size, rngs=rngs)

    def embed(self, tokens):
        return self.tok(tokens) + self.pos(jnp.arange(tokens.shape[-1]))[None]

    def hidden(self, tokens, layer: int):
        """The residual stream ``[B, T, d]`` after the first ``layer`` blocks."""
        h = self.embed(tokens)
        for block in self.blocks[:layer]:
            h = block(h)
        return h

    def finish(self, h, layer: int):
        """Logits ``[B, T, V]`` from the residual stream after ``layer`` blocks (the rest of the network)."""
        for block in self.blocks[layer:]:
            h = block(h)
        return self.unembed(self.ln_f(h))

    def __call__(self, tokens):
        return self.finish(self.hidden(tokens, 0), 0)


# -- training --------------------------------------------------------------------------------------


def _loss(model, tokens, weights):
    """Mean next-token cross-entropy, weighted per target token (``weights [B, T-1]``)."""
    logits = model(tokens[:, :-1])
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:])
    return jnp.sum(ce * weights) / jnp.sum(weights)


@nnx.jit
def _train_step(model, opt, tokens, weights):
    loss, grads = nnx.value_and_grad(_loss)(model, tokens, weights)
    opt.update(model, grads)
    return loss


def loss_weights(tokens, lengths, slot, label_weight: float) -> np.ndarray:
    """``[n, T-1]`` weight of every predicted token: 1 on real tokens, ``label_weight`` on the slot's word."""
    T = tokens.shape[1]
    pos = np.arange(1, T)[None, :]
    w = (pos < lengths[:, None]).astype(np.float32)
    w[np.arange(len(slot)), slot] *= label_weight  # target index slot predicts token slot + 1
    return w


def train(model, tokens, weights, cfg, log=print) -> list[float]:
    """AdamW (warm-up, cosine decay) on random minibatches; returns the loss every 100 steps."""
    sched = optax.warmup_cosine_decay_schedule(0.0, cfg["lr"], cfg["warmup"], cfg["steps"], cfg["lr"] * 0.05)
    opt = nnx.Optimizer(model, optax.adamw(sched, weight_decay=cfg["weight_decay"]), wrt=nnx.Param)
    rng = np.random.default_rng(cfg["seed"])
    n, history, t0, run = len(tokens), [], time.perf_counter(), []
    for step in range(cfg["steps"]):
        idx = rng.integers(0, n, cfg["batch"])
        run.append(float(_train_step(model, opt, jnp.asarray(tokens[idx]), jnp.asarray(weights[idx]))))
        if (step + 1) % 100 == 0 or step + 1 == cfg["steps"]:
            history.append(float(np.mean(run)))
            log(f"  step {step + 1}/{cfg['steps']}: loss {history[-1]:.4f} ({time.perf_counter() - t0:.0f} s)")
            run = []
    return history


def _flat(model):
    leaves = jax.tree_util.tree_leaves(nnx.state(model))
    return {f"p{i}": np.asarray(x) for i, x in enumerate(leaves)}


def _restore(model, arrays):
    state = nnx.state(model)
    leaves, treedef = jax.tree_util.tree_flatten(state)
    stored = [k for k in arrays.keys() if k.startswith("p") and k[1:].isdigit()]
    if len(leaves) != len(stored) or any(np.shape(arrays[f"p{i}"]) != x.shape for i, x in enumerate(leaves)):
        raise ValueError("cache: the stored weights do not match the model.")
    nnx.update(model, jax.tree_util.tree_unflatten(treedef, [jnp.asarray(arrays[f"p{i}"]) for i in range(len(leaves))]))


@jax.jit
def _slot_logits(logits, slot):
    return jnp.take_along_axis(logits, slot[:, None, None], axis=1)[:, 0]


def slot_logits(model, tokens, slot, batch: int = 512) -> np.ndarray:
    """The next-token logits ``[n, V]`` at each sequence's slot position."""
    fwd = nnx.jit(lambda m, t, s: _slot_logits(m(t), s))
    out = [np.asarray(fwd(model, jnp.asarray(tokens[i:i + batch]), jnp.asarray(slot[i:i + batch])))
           for i in range(0, len(tokens), batch)]
    return np.concatenate(out)


def default_cache() -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "jaxsteer", "tiny_decoder")


def prepare(cfg: dict | None = None, *, cache: str | None = "default", log=print) -> dict:
    """Records, text, vocabulary, tokens, split and the trained model (read from the cache when there).

    Returns a dict with ``model``, ``vocab``, ``tokens``, ``lengths``, ``slot``, ``y`` (1 = over),
    ``a`` (1 = male), ``train``, ``test`` (row indices), ``records``, ``cfg``, ``train_seconds``,
    ``history`` and ``cached``.
    """
    cfg = dict(DEFAULTS, **(cfg or {}))
    records = bios.load_records()
    n_all = len(records["sex"])
    keys = bios.strata(records)
    if cfg["n"] is not None and cfg["n"] < n_all:  # a stratified subsample (quick runs)
        sub = bios.stratified_subset(keys, cfg["n"] / n_all, np.random.default_rng(cfg["seed"] + 1))
        records, keys = bios.take(records, sub), keys[sub]
    texts = biographies(records)
    tr, te = bios.stratified_split(keys, cfg["test"], cfg["seed"])
    vocab = Vocab.build([texts[i] for i in tr], cfg["min_count"])
    tokens, lengths, slot = vocab.encode(texts)
    y = (records["income"] == ">50K").astype(np.int32)
    a = (records["sex"] == "Male").astype(np.int32)
    h = hashlib.sha256(json.dumps({k: cfg[k] for k in sorted(cfg)}, sort_keys=True).encode())
    h.update("\n".join(texts).encode())
    h.update(np.asarray(tr).tobytes())
    key = h.hexdigest()[:20]
    model = TinyDecoder(len(vocab), tokens.shape[1], d_model=cfg["d_model"], heads=cfg["heads"],
                        layers=cfg["layers"], mlp=cfg["mlp"], rngs=nnx.Rngs(cfg["seed"]))
    cache = default_cache() if cache == "default" else cache
    path = os.path.join(cache, f"tiny_decoder-{key}.npz") if cache else None
    info = {"cached": False, "train_seconds": None, "history": None}
    if path and os.path.exists(path):
        with np.load(path) as f:
            _restore(model, f)
            info.update(cached=True, train_seconds=float(f["train_seconds"]), history=f["history"].tolist())
        log(f"tiny decoder: read {path}")
    else:
        log(f"tiny decoder: training on {len(tr)} biographies ({len(vocab)} words, T = {tokens.shape[1]}, "
            f"d = {cfg['d_model']}, {cfg['layers']} blocks, {cfg['steps']} steps of {cfg['batch']})")
        t0 = time.perf_counter()
        hist = train(model, tokens[tr], loss_weights(tokens[tr], lengths[tr], slot[tr], cfg["label_weight"]),
                     cfg, log)
        info.update(train_seconds=round(time.perf_counter() - t0, 1), history=hist)
        if path:
            os.makedirs(cache, exist_ok=True)
            tmp = path + ".tmp.npz"
            np.savez(tmp, train_seconds=info["train_seconds"], history=np.asarray(hist), **_flat(model))
            os.replace(tmp, path)
            log(f"tiny decoder: wrote {path}")
    return dict(model=model, vocab=vocab, tokens=tokens, lengths=lengths, slot=slot, y=y, a=a, train=tr, test=te,
                records=records, texts=texts, cfg=cfg, key=key, **info)


# -- quality gate ----------------------------------------------------------------------------------

STATED = ("age", "workclass", "education", "marital-status", "relationship", "race", "sex", "capital-gain",
          "capital-loss", "hours-per-week", "native-country")
ALL_FEATURES = STATED + ("occupation",)


def raw_features(records, columns) -> np.ndarray:
    """Numeric columns as they are (capital gain/loss as log1p), categorical ones one-hot."""
    cols = []
    for c in columns:
        v = np.asarray(records[c])
        if c in ("age", "hours-per-week"):
            cols.append(v.astype(float)[:, None])
        elif c in ("capital-gain", "capital-loss"):
            cols.append(np.log1p(v.astype(float))[:, None])
        else:
            cats = np.unique(v)
            cols.append((v[:, None] == cats[None, :]).astype(float))
    return np.concatenate(cols, axis=1)


def _lr_auc(X, y, tr, te) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(X[tr])
    clf = LogisticRegression(C=1.0, max_iter=2000).fit(sc.transform(X[tr]), y[tr])
    return float(roc_auc_score(y[te], clf.predict_proba(sc.transform(X[te]))[:, 1]))


def quality_gate(prep: dict, *, tolerance: float = 0.03) -> dict:
    """Held-out ROC AUC of ``P("over")`` at the slot next to logistic regressions on the raw features."""
    from sklearn.metrics import roc_auc_score

    vocab, te, tr, y = prep["vocab"], prep["test"], prep["train"], prep["y"]
    logits = slot_logits(prep["model"], prep["tokens"][te], prep["slot"][te])
    logp = jax.nn.log_softmax(jnp.asarray(logits), axis=-1)
    p_over = np.exp(np.asarray(logp[:, vocab.id(OVER)]))
    p_under = np.exp(np.asarray(logp[:, vocab.id(UNDER)]))
    auc_lm = float(roc_auc_score(y[te], p_over))
    stated = _lr_auc(raw_features(prep["records"], STATED), y, tr, te)
    full = _lr_auc(raw_features(prep["records"], ALL_FEATURES), y, tr, te)
    return {"auc_lm": auc_lm, "auc_lr_stated": stated, "auc_lr_all": full, "tolerance": tolerance,
            "passed": bool(auc_lm >= stated - tolerance), "mass_over_under": float(np.mean(p_over + p_under)),
            "accuracy_lm": float(np.mean((p_over > p_under) == (y[te] == 1))), "n_test": int(len(te))}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small model on 4,000 records (a smoke run)")
    ap.add_argument("--cache", default="default", help="weights cache folder ('' for none)")
    args = ap.parse_args(argv)
    prep = prepare(QUICK if args.quick else DEFAULTS, cache=args.cache or None)
    gate = quality_gate(prep)
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in gate.items()}))
    return gate


if __name__ == "__main__":
    main()
