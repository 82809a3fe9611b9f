"""A BERT-style transformer encoder as Flax NNX modules, with sentence pooling.

The architecture (Devlin et al., 2019) as used by the sentence-transformers MiniLM models:

* **embeddings**: word + absolute position + token-type embeddings, summed, then LayerNorm;
* **L layers** of *post-LN* blocks: ``h ← LN(h + Attention(h))``, ``h ← LN(h + W₂ act(W₁ h))``, with
  multi-head scaled dot-product self-attention over the non-padding keys;
* **sentence pooling** (not part of BERT, done by sentence-transformers): mean of the last layer's
  token states over the attention mask, then L2 normalisation.

Every layer is a named submodule, ``model.encoder.layers[i]`` (path ``"encoder.layers.i"``), whose
``__call__(h, mask)`` returns one array ``[B, T, d]``; so :func:`jaxsteer.nn.insert` can put a
:class:`jaxsteer.nn.Steer` after any layer and every later layer (and the pooling) sees the steered
states. :func:`load_hf_weights` fills a model from a Hugging Face ``BertModel`` state dict (numpy
arrays, torch layout); it needs no third-party package.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = [
    "BertConfig",
    "BertEmbeddings",
    "BertAttention",
    "BertLayer",
    "BertStack",
    "BertEncoder",
    "mean_pool",
    "l2_normalize",
    "pool",
    "sentence_embedding",
    "load_hf_weights",
]

_List = getattr(nnx, "List", None)

_ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # erf form (Hugging Face "gelu")
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
}


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Shape and hyper-parameters of a BERT encoder (defaults: all-MiniLM-L6-v2)."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_layers: int = 6
    num_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    hidden_act: str = "gelu"

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"BertConfig: hidden_size ({self.hidden_size}) must be a multiple of num_heads ({self.num_heads})."
            )
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"BertConfig: hidden_act {self.hidden_act!r} not supported; one of {sorted(_ACTIVATIONS)}.")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def tiny(cls, **overrides) -> BertConfig:
        """A small random-weight configuration for tests: 2 layers, width 32, 4 heads, vocabulary 100."""
        base = dict(
            vocab_size=100,
            hidden_size=32,
            num_layers=2,
            num_heads=4,
            intermediate_size=64,
            max_position_embeddings=64,
        )
        base.update(overrides)
        return cls(**base)

    @classmethod
    def from_hf(cls, config: Mapping[str, Any]) -> BertConfig:
        """From a Hugging Face ``config.json`` of a ``BertModel`` (absolute positions only)."""
        model_type = config.get("model_type", "bert")
        if model_type != "bert":
            raise ValueError(f"config: model_type {model_type!r} is not supported (only 'bert').")
        pos = config.get("position_embedding_type", "absolute")
        if pos != "absolute":
            raise ValueError(f"config: position_embedding_type {pos!r} is not supported (only 'absolute').")
        return cls(
            vocab_size=int(config["vocab_size"]),
            hidden_size=int(config["hidden_size"]),
            num_layers=int(config["num_hidden_layers"]),
            num_heads=int(config["num_attention_heads"]),
            intermediate_size=int(config["intermediate_size"]),
            max_position_embeddings=int(config.get("max_position_embeddings", 512)),
            type_vocab_size=int(config.get("type_vocab_size", 2)),
            layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
            pad_token_id=int(config.get("pad_token_id", 0) or 0),
            hidden_act=str(config.get("hidden_act", "gelu")),
        )


def _init():
    return nnx.initializers.normal(stddev=0.02)  # BERT's initializer_range


def _linear(din, dout, *, dtype, param_dtype, rngs):
    return nnx.Linear(din, dout, kernel_init=_init(), dtype=dtype, param_dtype=param_dtype, rngs=rngs)


def _norm(d, eps, *, dtype, param_dtype, rngs):
    return nnx.LayerNorm(d, epsilon=eps, dtype=dtype, param_dtype=param_dtype, rngs=rngs)


class BertEmbeddings(nnx.Module):
    """Word + position + token-type embeddings, then LayerNorm: ``[B, T]`` ids → ``[B, T, d]``."""

    def __init__(self, config: BertConfig, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
        d = config.hidden_size
        kw = dict(embedding_init=_init(), dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.word_embeddings = nnx.Embed(config.vocab_size, d, **kw)
        self.position_embeddings = nnx.Embed(config.max_position_embeddings, d, **kw)
        self.token_type_embeddings = nnx.Embed(config.type_vocab_size, d, **kw)
        self.norm = _norm(d, config.layer_norm_eps, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.max_positions = config.max_position_embeddings

    def __call__(self, input_ids, token_type_ids=None):
        T = input_ids.shape[-1]
        if T > self.max_positions:
            raise ValueError(f"input_ids: sequence length {T} exceeds max_position_embeddings {self.max_positions}.")
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        h = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(jnp.arange(T, dtype=jnp.int32))
            + self.token_type_embeddings(token_type_ids)
        )
        return self.norm(h)


class BertAttention(nnx.Module):
    """Multi-head self-attention over the keys where ``mask`` is true, with its output projection.

    ``__call__(h [B, T, d], mask [B, T]) → [B, T, d]`` (before the residual and LayerNorm). Logits and
    softmax are computed in at least float32 whatever the compute dtype; masked keys get zero weight
    exactly (a query row whose keys are all masked attends uniformly, never NaN).
    """

    def __init__(self, config: BertConfig, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
        d = config.hidden_size
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.query = _linear(d, d, **kw)
        self.key = _linear(d, d, **kw)
        self.value = _linear(d, d, **kw)
        self.output = _linear(d, d, **kw)
        self.num_heads = config.num_heads
        self.head_dim = config.head_dim

    def __call__(self, h, mask=None):
        B, T, _ = h.shape
        H, Dh = self.num_heads, self.head_dim

        def heads(x):
            return x.reshape(B, T, H, Dh)

        q, k, v = heads(self.query(h)), heads(self.key(h)), heads(self.value(h))
        acc = jnp.promote_types(q.dtype, jnp.float32)  # float32 logits and softmax for low-precision dtypes
        logits = jnp.einsum("bqhe,bkhe->bhqk", q, k, preferred_element_type=acc)
        logits = logits.astype(acc) * (1.0 / math.sqrt(Dh))
        if mask is not None:
            keep = jnp.asarray(mask).astype(bool)[:, None, None, :]
            logits = jnp.where(keep, logits, jnp.finfo(acc).min)
        probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
        ctx = jnp.einsum("bhqk,bkhe->bqhe", probs, v).reshape(B, T, H * Dh)
        return self.output(ctx)


class BertLayer(nnx.Module):
    """One post-LN transformer block: ``h ← LN(h + Attn(h))``; ``h ← LN(h + W₂ act(W₁ h))``."""

    def __init__(self, config: BertConfig, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
        d, f, eps = config.hidden_size, config.intermediate_size, config.layer_norm_eps
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.attention = BertAttention(config, **kw)
        self.attention_norm = _norm(d, eps, **kw)
        self.intermediate = _linear(d, f, **kw)
        self.output = _linear(f, d, **kw)
        self.output_norm = _norm(d, eps, **kw)
        self.hidden_act = config.hidden_act

    def __call__(self, h, mask=None):
        h = self.attention_norm(h + self.attention(h, mask))
        ff = self.output(_ACTIVATIONS[self.hidden_act](self.intermediate(h)))
        return self.output_norm(h + ff)


class BertStack(nnx.Module):
    """The stack of :class:`BertLayer`: ``layers`` is an ``nnx.List`` (paths ``layers.0``, ...)."""

    def __init__(self, config: BertConfig, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
        layers = [BertLayer(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs) for _ in range(config.num_layers)]
        self.layers = _List(layers) if _List is not None else layers

    def __call__(self, h, mask=None, *, output_hidden_states: bool = False):
        states = [h]
        for layer in self.layers:
            # A steering layer inserted here may compute in another precision: keep the stack's dtype.
            h = layer(h, mask).astype(h.dtype)
            states.append(h)
        if output_hidden_states:
            return h, states
        return h


class BertEncoder(nnx.Module):
    """BERT encoder: :class:`BertEmbeddings` then :class:`BertStack` (``model.encoder.layers[i]``).

    Args:
        config: the :class:`BertConfig` (``BertConfig.tiny()`` for a small random model).
        dtype: compute dtype (``None``: that of the parameters, float32 by default; e.g.
            ``jnp.bfloat16`` for faster matrix products with float32 softmax and LayerNorm statistics).
        param_dtype: dtype of the parameters.
        rngs: ``nnx.Rngs`` for the random initialisation (overwritten when weights are loaded).

    ``model(input_ids [B, T], attention_mask [B, T])`` → last layer's token states ``[B, T, d]``;
    ``model.hidden_states(...)`` → the embeddings' output and every layer's, ``[L+1, B, T, d]``.
    """

    def __init__(self, config: BertConfig, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.config = config
        self.embeddings = BertEmbeddings(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.encoder = BertStack(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    @property
    def layers(self):
        """The transformer blocks (``model.layers[i] is model.encoder.layers[i]``)."""
        return self.encoder.layers

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None):
        h = self.embeddings(input_ids, token_type_ids)
        return self.encoder(h, attention_mask)

    def hidden_states(self, input_ids, attention_mask=None, token_type_ids=None):
        """Token states after the embeddings and after each layer, stacked: ``[L+1, B, T, d]``."""
        h = self.embeddings(input_ids, token_type_ids)
        _, states = self.encoder(h, attention_mask, output_hidden_states=True)
        return jnp.stack(states)


# -- pooling -----------------------------------------------------------------------------------------


def mean_pool(h, mask):
    """Mean of the token states ``h [..., T, d]`` over the tokens where ``mask [..., T]`` is true.

    As sentence-transformers: the count is clamped at 1e-9, so an all-padding row gives zeros.
    Computed in float32 (or wider).
    """
    acc = jnp.promote_types(h.dtype, jnp.float32)
    m = jnp.asarray(mask).astype(acc)[..., None]
    total = jnp.sum(h.astype(acc) * m, axis=-2)
    return total / jnp.maximum(jnp.sum(m, axis=-2), 1e-9)


def l2_normalize(x, eps: float = 1e-12):
    """``x / max(‖x‖₂, eps)`` along the last axis (``torch.nn.functional.normalize``)."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def pool(h, mask, mode: str = "mean"):
    """Sentence vector from token states: ``"mean"`` (over the mask), ``"cls"`` (first token), ``"max"``."""
    if mode == "mean":
        return mean_pool(h, mask)
    acc = jnp.promote_types(h.dtype, jnp.float32)
    if mode == "cls":
        return h[..., 0, :].astype(acc)
    if mode == "max":
        keep = jnp.asarray(mask).astype(bool)[..., None]
        out = jnp.max(jnp.where(keep, h.astype(acc), jnp.finfo(acc).min), axis=-2)
        return jnp.where(jnp.any(keep, axis=-2), out, 0.0)
    raise ValueError(f"pooling: {mode!r} not supported; one of 'mean', 'cls', 'max'.")


def sentence_embedding(model: BertEncoder, input_ids, attention_mask, *, pooling: str = "mean", normalize: bool = True):
    """Sentence embeddings ``[B, d]`` of a batch: the model, :func:`pool`, optionally :func:`l2_normalize`.

    A pure function of the model, for use inside ``nnx.jit`` / ``nnx.grad`` (e.g. to fine-tune a
    steering layer inserted in the model end to end).
    """
    e = pool(model(input_ids, attention_mask), attention_mask, pooling)
    return l2_normalize(e) if normalize else e


# -- weights from a Hugging Face BertModel state dict ------------------------------------------------


def _hf_names(config: BertConfig) -> dict[tuple, tuple[str, bool]]:
    """Our parameter path → (Hugging Face tensor name, transpose?)."""
    names: dict[tuple, tuple[str, bool]] = {}

    def linear(path, hf):
        names[path + ("kernel",)] = (hf + ".weight", True)  # torch Linear stores [out, in]
        names[path + ("bias",)] = (hf + ".bias", False)

    def norm(path, hf):
        names[path + ("scale",)] = (hf + ".weight", False)
        names[path + ("bias",)] = (hf + ".bias", False)

    for ours, hf in [("word_embeddings", "word"), ("position_embeddings", "position"), ("token_type_embeddings", "token_type")]:
        names[("embeddings", ours, "embedding")] = (f"embeddings.{hf}_embeddings.weight", False)
    norm(("embeddings", "norm"), "embeddings.LayerNorm")
    for i in range(config.num_layers):
        p, hf = ("encoder", "layers", i), f"encoder.layer.{i}"
        for x in ("query", "key", "value"):
            linear(p + ("attention", x), f"{hf}.attention.self.{x}")
        linear(p + ("attention", "output"), f"{hf}.attention.output.dense")
        norm(p + ("attention_norm",), f"{hf}.attention.output.LayerNorm")
        linear(p + ("intermediate",), f"{hf}.intermediate.dense")
        linear(p + ("output",), f"{hf}.output.dense")
        norm(p + ("output_norm",), f"{hf}.output.LayerNorm")
    return names


# Tensors of a BertModel checkpoint that the encoder does not use.
_UNUSED = ("pooler.", "embeddings.position_ids")


def load_hf_weights(model: BertEncoder, tensors: Mapping[str, Any], *, strict: bool = True) -> BertEncoder:
    """Copy a Hugging Face ``BertModel`` state dict into ``model``, in place.

    Args:
        model: a :class:`BertEncoder` of the matching :class:`BertConfig`.
        tensors: name → array (numpy, torch layout: ``Linear.weight`` is ``[out, in]``), e.g. from
            ``safetensors.numpy.load_file``. A ``"bert."`` prefix is stripped; the pooler and
            ``position_ids`` are ignored.
        strict: raise on missing, unexpected or mis-shaped tensors (else leave those untouched).

    Returns:
        ``model``, its parameters replaced (cast to their current dtype).
    """
    tensors = {(k[5:] if k.startswith("bert.") else k): v for k, v in tensors.items()}
    names = _hf_names(model.config)
    wanted = {hf for hf, _ in names.values()}
    unexpected = sorted(k for k in tensors if k not in wanted and not k.startswith(_UNUSED))
    missing = sorted(hf for hf in wanted if hf not in tensors)
    if strict and (missing or unexpected):
        raise ValueError(
            f"weights: {len(missing)} missing tensors {missing[:5]}, {len(unexpected)} unexpected {unexpected[:5]} "
            "(not a BertModel state dict of this configuration?)."
        )
    for path, (hf, transpose) in names.items():
        if hf not in tensors:
            continue
        obj = model
        for p in path[:-1]:
            obj = obj[p] if isinstance(p, int) else getattr(obj, p)
        var = getattr(obj, path[-1])
        arr = np.asarray(tensors[hf])
        if transpose:
            arr = arr.T
        current = _get_value(var)
        if arr.shape != tuple(current.shape):
            if strict:
                raise ValueError(f"weights: {hf} has shape {arr.shape}, the model expects {tuple(current.shape)}.")
            continue
        _set_value(var, jnp.asarray(arr, dtype=current.dtype))
    return model


def _get_value(var):
    return var.get_value() if hasattr(var, "get_value") else var.value  # flax < 0.12: .value


def _set_value(var, value) -> None:
    if hasattr(var, "set_value"):
        var.set_value(value)
    else:  # pragma: no cover - flax < 0.12
        var.value = value
