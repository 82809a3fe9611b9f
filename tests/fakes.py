"""Test doubles shared by the encoder tests (no real weights or tokenizer files needed)."""

import zlib


class HashTokenizer:
    """Deterministic stand-in for a WordPiece tokenizer: [CLS]=1, words hashed into 3..V-1, [SEP]=2."""

    def __init__(self, vocab_size):
        self.vocab_size = vocab_size

    def __call__(self, sentences):
        return [[1] + [3 + zlib.crc32(w.encode()) % (self.vocab_size - 3) for w in s.lower().split()] + [2]
                for s in sentences]
