"""Splitting a note's tokens into overlapping chunks the encoder can take, and pooling them back."""

from __future__ import annotations

import numpy as np


def clean_text(text: str | None) -> str:
    """Note text as valid UTF-8: bytes that were not UTF-8 (kept as lone surrogates by a lenient decode)
    become U+FFFD, as a strict reader with replacement would have shown them."""
    if not text:
        return ""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # surrogates that never were bytes
        raw = text.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


def chunk_spans(n_tokens: int, room: int, stride: int) -> list[tuple[int, int]]:
    """[start, end) spans of at most `room` tokens covering all n tokens, each overlapping the previous by
    `stride` tokens; an empty note gives one empty chunk (its vector is the encoder's empty input)."""
    if room <= stride:
        raise ValueError(f"chunk room ({room} tokens) must exceed the overlap ({stride})")
    if n_tokens <= room:
        return [(0, n_tokens)]
    spans, start = [], 0
    while True:
        end = min(start + room, n_tokens)
        spans.append((start, end))
        if end == n_tokens:
            return spans
        start = end - stride


def pool_chunks(vectors: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """One vector per note: the chunks' mean weighted by their token counts (at least 1 each)."""
    weights = np.maximum(lengths, 1).astype(np.float64)
    return (vectors * weights[:, None]).sum(axis=0) / weights.sum()
