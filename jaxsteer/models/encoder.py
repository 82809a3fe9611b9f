"""Batched, jitted, padding-aware sentence encoding with a :class:`~jaxsteer.models.BertEncoder`.

:class:`SentenceEncoder` turns lists of sentences into token ids (its tokenizer), sorts them by
length, cuts them into batches, pads each batch to a *bucketed* shape (lengths rounded up to a few
fixed sizes, batch sizes to powers of two) so that only a handful of shapes are ever compiled, runs
one jitted function per batch and restores the input order. The model is passed to the jitted
function as (graph definition, state) on each call, so model surgery (e.g. a
:class:`jaxsteer.nn.Steer` inserted with :func:`jaxsteer.nn.insert`) is picked up at the next call.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsteer import _validate
from jaxsteer.models.bert import BertEncoder, l2_normalize, pool

__all__ = ["SentenceEncoder", "HiddenStates", "DEFAULT_LENGTH_BUCKETS"]

# Padded sequence lengths (each batch is padded to the smallest one that fits): steps of 8 tokens up
# to 64, then 16, 32, 64, i.e. at most 12.5-25% of padding past a batch's longest sentence, while a
# corpus compiles at most ~20 lengths (about a second each for MiniLM-L6 on a CPU; a corpus of
# similar sentences hits only a few).
DEFAULT_LENGTH_BUCKETS = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512)


class HiddenStates(NamedTuple):
    """Every layer's token states and the attention mask of a list of sentences (input order).

    ``states [L+1, n, T, d]`` (float32; index 0 is the embeddings' output, index i the output of
    layer i; or only the requested ``layers``), ``mask [n, T]`` (bool, True on real tokens), ``T``
    the longest tokenised sentence. Positions past a sentence's length are zeros.
    """

    states: np.ndarray
    mask: np.ndarray


@functools.partial(jax.jit, static_argnames=("graphdef", "mode", "pooling", "normalize", "layers"))
def _run(graphdef, state, ids, mask, groups, *, mode, pooling, normalize, layers):
    model = nnx.merge(graphdef, state)
    if groups is not None:
        from jaxsteer import nn as _nn  # inside the trace: the group ids are a tracer of this jit

        ctx = _nn.groups(groups)
    else:
        ctx = contextlib.nullcontext()
    with ctx:
        if mode == "embed":
            e = pool(model(ids, mask), mask, pooling)
            return l2_normalize(e) if normalize else e
        states = model.hidden_states(ids, mask)
        if layers is not None:
            states = states[np.asarray(layers)]
        return states.astype(jnp.float32)


def _pow2_at_least(n: int, cap: int) -> int:
    b = 1
    while b < n:
        b *= 2
    return min(b, cap)


class SentenceEncoder:
    """Sentence embeddings and hidden states of a :class:`BertEncoder` with a tokenizer.

    Args:
        model: the :class:`BertEncoder` (an NNX module; ``encoder.model`` is it, e.g. for surgery).
        tokenizer: ``tokenizer(sentences) → list of token-id lists`` (special tokens included,
            truncated to ``max_seq_length``), e.g. :class:`jaxsteer.models.loading.HFTokenizer`.
        max_seq_length: longest token sequence (longer tokenisations are cut here too).
        pooling: ``"mean"`` (over the attention mask), ``"cls"`` or ``"max"``.
        normalize: L2-normalise the sentence embeddings.
        length_buckets: padded lengths to compile (``max_seq_length`` is always one of them).
        name: a label (the model's name) for ``repr``.

    ``encode(sentences)`` → ``[n, d]`` float32 numpy; ``hidden_states(sentences)`` →
    :class:`HiddenStates`. Both take ``a=`` (integer group ids per sentence) for models with inserted
    :class:`jaxsteer.nn.Steer` layers: they are entered as :func:`jaxsteer.nn.groups` inside the jit.
    """

    def __init__(
        self,
        model: BertEncoder,
        tokenizer: Callable[[Sequence[str]], list[list[int]]],
        *,
        max_seq_length: int = 256,
        pooling: str = "mean",
        normalize: bool = True,
        length_buckets: Sequence[int] | None = None,
        pad_token_id: int | None = None,
        name: str | None = None,
    ):
        max_seq_length = int(min(max_seq_length, model.config.max_position_embeddings))
        if pooling not in ("mean", "cls", "max"):
            raise ValueError(f"pooling: {pooling!r} not supported; one of 'mean', 'cls', 'max'.")
        buckets = DEFAULT_LENGTH_BUCKETS if length_buckets is None else length_buckets
        self.model = model
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.pooling = pooling
        self.normalize = bool(normalize)
        self.length_buckets = tuple(sorted({int(b) for b in buckets if 0 < int(b) < max_seq_length} | {max_seq_length}))
        self.pad_token_id = int(model.config.pad_token_id if pad_token_id is None else pad_token_id)
        self.name = name

    # -- properties ------------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """Width of the embeddings and hidden states (384 for MiniLM-L6)."""
        return self.model.config.hidden_size

    @property
    def num_layers(self) -> int:
        return self.model.config.num_layers

    def __repr__(self) -> str:
        c = self.model.config
        return (
            f"SentenceEncoder({self.name or 'bert'}: {c.num_layers} layers, d={c.hidden_size}, {c.num_heads} heads, "
            f"pooling={self.pooling}, normalize={self.normalize}, max_seq_length={self.max_seq_length})"
        )

    # -- tokens and batches ----------------------------------------------------------------------

    def tokenize(self, sentences: Sequence[str]) -> list[list[int]]:
        """Token ids of each sentence (special tokens included), cut at ``max_seq_length``."""
        ids = self.tokenizer(list(sentences))
        if len(ids) != len(sentences):
            raise ValueError(f"tokenizer: returned {len(ids)} sequences for {len(sentences)} sentences.")
        return [list(x)[: self.max_seq_length] for x in ids]

    def batch(self, sentences, *, length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Token ids ``[n, T]`` (int32, padded) and attention mask ``[n, T]`` (bool), in input order.

        ``T`` is ``length`` if given (longer sentences are cut), else the bucket of the longest
        sentence. For training loops that call the model directly, e.g.
        ``sentence_embedding(enc.model, *enc.batch(sentences))`` inside ``nnx.value_and_grad``.
        """
        sentences, _ = self._as_list(sentences)
        ids = self.tokenize(sentences)
        T = int(length) if length is not None else self._bucket(max((len(x) for x in ids), default=1))
        tok = np.full((len(ids), T), self.pad_token_id, dtype=np.int32)
        mask = np.zeros((len(ids), T), dtype=bool)
        for j, x in enumerate(ids):
            x = x[:T]
            tok[j, : len(x)] = x
            mask[j, : len(x)] = True
        return tok, mask

    def _bucket(self, length: int) -> int:
        for b in self.length_buckets:
            if b >= length:
                return b
        return self.length_buckets[-1]

    def _batches(self, ids: list[list[int]], batch_size: int):
        """Yield ``(rows, ids [B, T], mask [B, T])``: rows of the input, longest first, bucketed shapes."""
        if batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size}.")
        lengths = np.array([max(len(x), 1) for x in ids])
        order = np.argsort(-lengths, kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            T = self._bucket(int(lengths[rows].max()))
            B = _pow2_at_least(len(rows), batch_size)
            tok = np.full((B, T), self.pad_token_id, dtype=np.int32)
            mask = np.zeros((B, T), dtype=bool)
            for j, r in enumerate(rows):
                x = ids[r][:T]
                tok[j, : len(x)] = x
                mask[j, : len(x)] = True
            yield rows, tok, mask

    @staticmethod
    def _as_list(sentences) -> tuple[list[str], bool]:
        if isinstance(sentences, str):
            return [sentences], True
        sentences = list(sentences)
        bad = [type(s).__name__ for s in sentences if not isinstance(s, str)]
        if bad:
            raise TypeError(f"sentences: expected strings, got {bad[0]}.")
        return sentences, False

    @staticmethod
    def _groups(a, groups, n: int, where: str):
        a = _validate.renamed(a, groups, new_name="a", old_name="groups", why="group ids are `a` throughout jaxsteer", where=where)
        if a is None:
            return None
        return _validate.codes(a, "a", "group", n=n, rows_of="sentences").astype(np.int32)

    @staticmethod
    def _progress(iterable, total: int, enabled: bool, desc: str):
        if not enabled:
            return iterable
        try:
            from tqdm.auto import tqdm
        except ImportError:  # a plain counter on stderr
            return _plain_progress(iterable, total, desc)
        return tqdm(iterable, total=total, desc=desc, unit="batch")

    # -- public API ------------------------------------------------------------------------------

    def encode(self, sentences, batch_size: int = 64, progress: bool = False, *, a=None, groups=None) -> np.ndarray:
        """Sentence embeddings ``[n, d]`` (float32, L2-normalised unless ``normalize=False``), input order.

        Args:
            sentences: a list of strings (a single string gives a ``[d]`` vector).
            batch_size: sentences per jitted call (batches are padded to powers of two up to it).
            progress: show a progress bar (tqdm if installed).
            a: optional integer group ids ``[n]`` for inserted :class:`jaxsteer.nn.Steer` layers.
            groups: deprecated alias of ``a``.
        """
        sentences, single = self._as_list(sentences)
        n = len(sentences)
        out = np.zeros((n, self.dim), dtype=np.float32)
        if n:
            g = self._groups(a, groups, n, "encode")
            graphdef, state = nnx.split(self.model)
            ids = self.tokenize(sentences)
            nb = -(-n // batch_size)
            pending = []  # device results, fetched a few batches late so the host keeps feeding the device
            for rows, tok, mask in self._progress(self._batches(ids, batch_size), nb, progress, "encode"):
                gb = None if g is None else _pad_rows(g[rows], tok.shape[0])
                e = _run(graphdef, state, tok, mask, gb, mode="embed", pooling=self.pooling,
                         normalize=self.normalize, layers=None)
                pending.append((rows, e))
                if len(pending) > 2:
                    r, x = pending.pop(0)
                    out[r] = np.asarray(x)[: len(r)]
            for r, x in pending:
                out[r] = np.asarray(x)[: len(r)]
        return out[0] if single else out

    def hidden_states(self, sentences, batch_size: int = 64, progress: bool = False, *, layers=None,
                      a=None, groups=None) -> HiddenStates:
        """Every layer's token states ``[L+1, n, T, d]`` and the attention mask ``[n, T]``, input order.

        Args:
            sentences: a list of strings.
            batch_size, progress, a, groups: as :meth:`encode`.
            layers: indices into the ``L+1`` states to keep (0: embeddings, i: after layer i; negative
                indices count from the end), default all. Memory is ``len(layers)·n·T·d·4`` bytes.

        Returns:
            :class:`HiddenStates` ``(states, mask)`` (unpacks as a tuple).
        """
        sentences, _ = self._as_list(sentences)
        n, L = len(sentences), self.num_layers + 1
        sel = None if layers is None else tuple(int(i) % L if -L <= int(i) < L else _bad_layer(i, L) for i in layers)
        ids = self.tokenize(sentences)
        T = max((len(x) for x in ids), default=0)
        states = np.zeros((L if sel is None else len(sel), n, T, self.dim), dtype=np.float32)
        mask = np.zeros((n, T), dtype=bool)
        if n:
            g = self._groups(a, groups, n, "hidden_states")
            graphdef, state = nnx.split(self.model)
            nb = -(-n // batch_size)
            for rows, tok, m in self._progress(self._batches(ids, batch_size), nb, progress, "hidden states"):
                gb = None if g is None else _pad_rows(g[rows], tok.shape[0])
                h = np.asarray(_run(graphdef, state, tok, m, gb, mode="states", pooling=self.pooling,
                                    normalize=self.normalize, layers=sel))
                t = min(T, h.shape[2])
                mb = m[: len(rows), :t]
                states[:, rows, :t] = h[:, : len(rows), :t] * mb[None, :, :, None]
                mask[rows, :t] = mb
        return HiddenStates(states, mask)


def _pad_rows(x: np.ndarray, B: int) -> np.ndarray:
    if len(x) == B:
        return x
    return np.concatenate([x, np.zeros((B - len(x),) + x.shape[1:], dtype=x.dtype)])


def _bad_layer(i, L):
    raise ValueError(f"layers: index {i} out of range for {L} hidden states (embeddings + {L - 1} layers).")


def _plain_progress(iterable, total: int, desc: str):
    for i, x in enumerate(iterable, 1):
        yield x
        print(f"\r{desc}: {i}/{total} batches", end="" if i < total else "\n", file=sys.stderr, flush=True)
