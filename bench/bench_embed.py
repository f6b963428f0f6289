"""Benchmark of note embedding: batching, and the forward pass in fp32 against bf16, side by side in one run.

1. Batching: the pipeline (length-sorted dynamic batches at the device's default budget) against a naive
   loop (one note at a time, in file order) on the same notes, MiniLM in fp32. Target: at least 3x the naive
   loop's notes/s, the same vectors (max abs difference < 1e-4).
   Batch budget: notes/s of MiniLM in fp32 and bf16 at --budgets padded tokens per batch, on the generator's
   reports and on long notes (alternating, best of --repeats): the evidence for the default budget
   (embed.run.CPU_BATCH_TOKENS, GPU_BATCH_TOKENS).
2. Precision: `embed_texts` with the encoder loaded in fp32 and in bf16 (`load_encoder(precision=...)`,
   what `embed --precision` does), notes/s of each (the two alternate, best of --repeats, so both see
   the same machine) and how far bf16 moves the vectors: cosine to the fp32 vector (min, mean) and the
   share of each note's 10 nearest neighbours (by fp32 cosine, within the sample) that bf16 keeps. For
   each encoder:
     - minilm: the packaged all-MiniLM-L6-v2 (6 layers x 384);
     - bert-base: a randomly initialised BERT of Bio_ClinicalBERT's shape (12 layers x 768, 12 heads,
       3,072 intermediate, 512 positions), built here without the hub, with MiniLM's uncased WordPiece
       tokenizer (30,522 entries; Bio_ClinicalBERT's cased vocabulary has 28,996, only on the hub): its
       speed is ClinicalBERT's, its vectors are not (random weights), so its cosines only say how bf16
       rounds a network of that depth.
   and each length: the generator's radiology reports as written (~100 tokens), and --long-tokens (reports
   joined until each note has about that many tokens, drawn uniformly from 0.5x to 1.5x of it; real
   MIMIC-IV reports are longer than the generator's). Targets: on a CPU with bf16, bf16 >= 2x fp32 for
   MiniLM with mean cosine >= 0.999.
   Where the time goes: the encoder's own operators (torch.profiler, MiniLM, the generator's reports, one
   pass each) in fp32 and bf16: the linear layers, attention, and the rest, with each part's bf16 speed-up.
3. Projection: hours to embed --notes-to-serve notes (the notes some stay can serve; docs/SCALING.md says
   how the count was made) with each encoder, precision and length, at the measured notes/s.

    python bench/bench_embed.py [--notes 300] [--bert-notes 60] [--long-tokens 400] [--device auto]
                                [--budgets 1024,2048,4096,8192,16384] [--notes-to-serve 221178]
                                [--skip-batching]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CLINICALBERT_SHAPE = dict(
    hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, max_position_embeddings=512
)


def synthetic_notes(n: int) -> list[str]:
    from sepsis_fusion.pipelines.synth.generate import generate

    with tempfile.TemporaryDirectory() as tmp:
        generate(max(50, n // 2), 0, Path(tmp), density="light", progress=False)
        rows = duckdb.sql(
            f"SELECT text FROM read_csv('{tmp}/note/radiology.csv.gz', header=true, quote='\"', escape='\"') LIMIT {n}"
        ).fetchall()
    return [r[0] for r in rows]


def long_notes(reports: list[str], n: int, tokens: int, tokenizer, seed: int = 0) -> list[str]:
    """n notes of reports joined in turn until each reaches its target, drawn from 0.5x-1.5x `tokens`."""
    rng = np.random.default_rng(seed)
    lengths = [len(ids) for ids in tokenizer(reports, add_special_tokens=False, verbose=False)["input_ids"]]
    notes, k = [], 0
    for target in rng.integers(tokens // 2, tokens * 3 // 2 + 1, n):
        parts, have = [], 0
        while have < target:
            parts.append(reports[k % len(reports)])
            have += lengths[k % len(reports)]
            k += 1
        notes.append("\n\n".join(parts))
    return notes


def bert_base_folder(out: Path) -> Path:
    """A randomly initialised BERT of Bio_ClinicalBERT's shape with MiniLM's tokenizer, saved as a folder."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from sepsis_fusion.pipelines.embed.encoder import model_location

    tokenizer = AutoTokenizer.from_pretrained(model_location("minilm"))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, **CLINICALBERT_SHAPE)).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def neighbours_kept(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Mean share of each note's k nearest neighbours by cosine under `a` that `b` keeps."""

    def top(x: np.ndarray) -> np.ndarray:
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)
        sim = unit @ unit.T
        np.fill_diagonal(sim, -np.inf)
        return np.argsort(-sim, axis=1, kind="stable")[:, :k]

    ta, tb = top(a), top(b)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(ta, tb)]))


def timed(enc, texts: list[str], batch_tokens: int | None = None) -> tuple[float, np.ndarray]:
    from sepsis_fusion.pipelines.embed.run import embed_texts

    start = time.perf_counter()
    vectors = embed_texts(enc, texts, batch_tokens=batch_tokens)
    return time.perf_counter() - start, vectors


def load_pair(location: str, device: str) -> dict:
    """The encoder loaded in fp32 and in bf16, as `embed --precision` loads it."""
    from sepsis_fusion.pipelines.embed.encoder import load_encoder

    return {p: load_encoder(location, device=device, precision=p) for p in ("fp32", "bf16")}


def alternating_best(
    encoders: dict, texts: list[str], repeats: int, batch_tokens: int | None = None
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Each precision's best seconds over `repeats` passes, the two alternating so both see the same machine,
    and its vectors."""
    for enc in encoders.values():
        timed(enc, texts[:4], batch_tokens)  # warm-up (oneDNN picks its kernels on the first call)
    best = {p: np.inf for p in encoders}
    vectors = {}
    for _ in range(repeats):
        for p, enc in encoders.items():
            seconds, vectors[p] = timed(enc, texts, batch_tokens)
            best[p] = min(best[p], seconds)
    return best, vectors


def batching(enc, texts: list[str]) -> None:
    from sepsis_fusion.pipelines.embed.run import embed_texts

    embed_texts(enc, texts[:8])  # warm-up
    start = time.perf_counter()
    naive = np.stack([embed_texts(enc, [t])[0] for t in texts])
    naive_s = time.perf_counter() - start
    batched_s, batched = timed(enc, texts)
    diff = float(np.abs(naive - batched).max())
    print(f"\n1. batching, minilm fp32 on {enc.device}, {len(texts)} generator reports")
    print(f"naive loop (one note at a time): {len(texts) / naive_s:8.1f} notes/s")
    print(f"pipeline (sorted dynamic batches): {len(texts) / batched_s:6.1f} notes/s")
    print(
        f"speed-up {naive_s / batched_s:.2f}x (target >= 3x); max abs difference of the vectors {diff:.2e} "
        f"(target < 1e-4)"
    )


def budget_sweep(encoders: dict, samples: dict[str, list[str]], budgets: list[int], repeats: int) -> None:
    from sepsis_fusion.pipelines.embed.run import default_batch_tokens

    default = default_batch_tokens(encoders["fp32"].device)
    print(f"\nbatch budget, minilm (padded tokens per batch; this device's default {default:,}), best of {repeats}")
    print("| notes | budget | fp32 notes/s | bf16 notes/s | bf16/fp32 |")
    print("|---|---:|---:|---:|---:|")
    for length, texts in samples.items():
        for budget in budgets:
            best, _ = alternating_best(encoders, texts, repeats, budget)
            fp32, bf16 = (len(texts) / best[p] for p in ("fp32", "bf16"))
            mark = " (default)" if budget == default else ""
            print(f"| {length} | {budget:,}{mark} | {fp32:.1f} | {bf16:.1f} | {bf16 / fp32:.2f}x |")


def time_by_operator(encoders: dict, texts: list[str]) -> None:
    """Self time of the encoder's operators in one pass over `texts`, fp32 against bf16, in three parts."""
    from torch.profiler import ProfilerActivity, profile

    from sepsis_fusion.pipelines.embed.run import embed_texts

    def part(name: str) -> str:
        if name in ("aten::addmm", "aten::mm", "aten::linear"):
            return "linear layers"
        return "attention" if "scaled_dot_product" in name else "the rest"

    seconds = {}
    for p, enc in encoders.items():
        embed_texts(enc, texts[:4])
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if enc.device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            embed_texts(enc, texts)
        totals = {"linear layers": 0.0, "attention": 0.0, "the rest": 0.0}
        for event in prof.key_averages():
            self_us = event.self_device_time_total if enc.device.type == "cuda" else event.self_cpu_time_total
            totals[part(event.key)] += self_us / 1e6
        seconds[p] = totals
    print(f"\nwhere the time goes, minilm, {len(texts)} generator reports, one profiled pass each")
    print("| part | fp32 s | bf16 s | bf16 speed-up | share of bf16 time |")
    print("|---|---:|---:|---:|---:|")
    whole = {p: sum(seconds[p].values()) for p in seconds}
    for name in ("linear layers", "attention", "the rest"):
        a, b = seconds["fp32"][name], seconds["bf16"][name]
        print(f"| {name} | {a:.2f} | {b:.2f} | {a / b:.2f}x | {b / whole['bf16']:.0%} |")
    print(f"| all | {whole['fp32']:.2f} | {whole['bf16']:.2f} | {whole['fp32'] / whole['bf16']:.2f}x | 100% |")


def precision_rows(name: str, encoders: dict, samples: dict[str, list[str]], repeats: int) -> list[dict]:
    rows = []
    for length, texts in samples.items():
        tokens = [
            len(t) for t in encoders["fp32"].tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        ]
        best, vectors = alternating_best(encoders, texts, repeats)
        a, b = vectors["fp32"], vectors["bf16"]
        cosine = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        rows.append(
            {
                "encoder": name,
                "length": length,
                "notes": len(texts),
                "tokens_mean": float(np.mean(tokens)),
                "tokens_p50": float(np.median(tokens)),
                "tokens_max": int(max(tokens)),
                "fp32": len(texts) / best["fp32"],
                "bf16": len(texts) / best["bf16"],
                "cos_min": float(cosine.min()),
                "cos_mean": float(cosine.mean()),
                "kept": neighbours_kept(a, b),
                "device": str(encoders["fp32"].device),
            }
        )
    return rows


def main() -> None:
    from sepsis_fusion.pipelines.embed.encoder import cpu_supports_bf16, model_location, resolve_device

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=300, help="MiniLM's sample per length")
    parser.add_argument("--bert-notes", type=int, default=60, help="the BERT-base shape's sample per length")
    parser.add_argument("--long-tokens", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--notes-to-serve", type=int, default=221_178, help="notes for the projection")
    parser.add_argument("--budgets", default="1024,2048,4096,8192,16384", help="batch budgets to sweep")
    parser.add_argument("--skip-batching", action="store_true")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    device = resolve_device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    native = cpu_supports_bf16() if device.type == "cpu" else torch.cuda.is_bf16_supported()
    print(f"device: {device} ({where}); native bf16: {'yes' if native else 'no'}; torch {torch.__version__}")
    reports = synthetic_notes(max(args.notes, args.bert_notes) * 4)
    tokenizer = AutoTokenizer.from_pretrained(model_location("minilm"))
    minilm = load_pair("minilm", args.device)
    if not args.skip_batching:
        batching(minilm["fp32"], reports[: args.notes])
        budgets = [int(b) for b in args.budgets.split(",")]
        sweep = {
            "generator": reports[: args.notes],
            f"~{args.long_tokens} tokens": long_notes(reports, args.notes // 3, args.long_tokens, tokenizer),
        }
        budget_sweep(minilm, sweep, budgets, args.repeats)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, encoders, n in (
            ("minilm", minilm, args.notes),
            ("bert-base", load_pair(str(bert_base_folder(Path(tmp) / "bert-base")), args.device), args.bert_notes),
        ):
            samples = {
                "generator": reports[:n],
                f"~{args.long_tokens} tokens": long_notes(reports, n, args.long_tokens, tokenizer),
            }
            rows += precision_rows(name, encoders, samples, args.repeats)

    print(f"\n2. precision: fp32 against bf16, best of {args.repeats}, alternating")
    print(
        "| encoder | notes | tokens mean (p50, max) | fp32 notes/s | bf16 notes/s | bf16/fp32 | cosine min / mean "
        "| top-10 neighbours kept |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['encoder']}, {r['length']} | {r['notes']} | {r['tokens_mean']:.0f} ({r['tokens_p50']:.0f}, "
            f"{r['tokens_max']}) | {r['fp32']:.1f} | {r['bf16']:.1f} | {r['bf16'] / r['fp32']:.2f}x | "
            f"{r['cos_min']:.5f} / {r['cos_mean']:.5f} | {r['kept']:.2f} |"
        )
    minilm = next(r for r in rows if r["encoder"] == "minilm" and r["length"] == "generator")
    met = minilm["bf16"] >= 2 * minilm["fp32"] and minilm["cos_mean"] >= 0.999
    print(
        f"target (minilm, generator reports: bf16 >= 2x fp32, mean cosine >= 0.999): "
        f"{'met' if met else 'not met'} ({minilm['bf16'] / minilm['fp32']:.2f}x, {minilm['cos_mean']:.5f})"
    )

    time_by_operator(minilm, reports[: args.notes])

    print(f"\n3. projection: hours to embed {args.notes_to_serve:,} notes at the rates above")
    print("| encoder, length | fp32 | bf16 |")
    print("|---|---:|---:|")
    for r in rows:
        hours = {p: args.notes_to_serve / r[p] / 3600 for p in ("fp32", "bf16")}
        print(f"| {r['encoder']}, {r['length']} | {hours['fp32']:.1f} h | {hours['bf16']:.1f} h |")


if __name__ == "__main__":
    main()
