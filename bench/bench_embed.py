"""Benchmark of note embedding: the pipeline (length-sorted dynamic batches) against a naive loop
(one note at a time, in file order) on the same notes and model, with the vectors compared.

Target: at least 3x the naive loop's notes per second on this CPU with all-MiniLM-L6-v2, and
the same vectors (max abs difference < 1e-4).

    python bench/bench_embed.py --notes 400 [--encoder minilm] [--device auto]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def synthetic_notes(n: int) -> list[str]:
    from sepsis_fusion.pipelines.synth.generate import generate

    with tempfile.TemporaryDirectory() as tmp:
        generate(max(50, n // 2), 0, Path(tmp), density="light", progress=False)
        rows = duckdb.sql(
            f"SELECT text FROM read_csv('{tmp}/note/radiology.csv.gz', header=true, quote='\"', escape='\"') LIMIT {n}"
        ).fetchall()
    return [r[0] for r in rows]


def main() -> None:
    from sepsis_fusion.pipelines.embed.encoder import load_encoder
    from sepsis_fusion.pipelines.embed.run import embed_texts

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=400)
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    texts = synthetic_notes(args.notes)
    enc = load_encoder(args.encoder, device=args.device)
    tokens = [len(t) for t in enc.tokenizer(texts, add_special_tokens=False)["input_ids"]]
    embed_texts(enc, texts[:8])  # warm-up

    start = time.perf_counter()
    naive = np.stack([embed_texts(enc, [t])[0] for t in texts])
    naive_s = time.perf_counter() - start
    start = time.perf_counter()
    batched = embed_texts(enc, texts)
    batched_s = time.perf_counter() - start

    diff = float(np.abs(naive - batched).max())
    print(
        f"{len(texts)} notes, {np.mean(tokens):.0f} tokens on average (max {max(tokens)}), model {args.encoder} "
        f"on {enc.device}"
    )
    print(f"naive loop (one note at a time): {len(texts) / naive_s:8.1f} notes/s")
    print(f"pipeline (sorted dynamic batches): {len(texts) / batched_s:6.1f} notes/s")
    print(
        f"speed-up {naive_s / batched_s:.2f}x (target >= 3x); max abs difference of the vectors {diff:.2e} "
        f"(target < 1e-4)"
    )


if __name__ == "__main__":
    main()
