"""`sepsis-fusion embed`: note embeddings for Feast, one vector per note, cached by note.

Reads notes_to_embed.parquet from the feature folder dbt writes; writes note_embeddings.parquet (every
note) and note_slot_<j>.parquet for j < N beside it: the notes whose sequence_slot is j (their number in
the stay modulo N, dbt var note_sequence_length), keyed on their available_at. Feast serves each slot
file as one view, so as of any time the N views hold the stay's last N notes available then, each with
its own vector and charttime; nothing is averaged.
A note's vector is cached by (note_id, text hash) under the model's fingerprint, one Parquet part per
group of notes, so a re-run embeds only new or changed notes and an interrupted run resumes. Note text
never appears in logs or errors.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from .chunks import chunk_spans, clean_text, pool_chunks
from .encoder import EmbedError, Encoder, model_fingerprint


@dataclass
class EmbedResult:
    notes: int
    embedded: int  # notes that went through the encoder this run (cache misses)
    stays_with_notes: int
    slots: int  # N: the note sequence's length
    seconds_encoding: float


def slot_file(slot: int) -> str:
    """The file of note-sequence slot `slot` in the feature folder (one Feast view each)."""
    return f"note_slot_{slot:02d}.parquet"


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def embed_texts(enc: Encoder, texts: list[str], stride: int = 64, batch_tokens: int = 16384) -> np.ndarray:
    """One pooled vector per text: chunks of at most enc.max_length tokens overlapping by `stride`,
    encoded in length-sorted batches of about `batch_tokens` tokens, pooled by token count."""
    tok = enc.tokenizer
    texts = [clean_text(t) for t in texts]
    ids = tok(texts, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]
    prefix, suffix = special_tokens_around(tok)
    room = enc.max_length - len(prefix) - len(suffix)
    chunk_ids, owner, lengths = [], [], []
    for i, seq in enumerate(ids):
        for start, end in chunk_spans(len(seq), room, stride):
            chunk_ids.append(prefix + list(seq[start:end]) + suffix)
            owner.append(i)
            lengths.append(end - start)
    order = np.argsort([len(c) for c in chunk_ids], kind="stable")
    vectors = np.zeros((len(chunk_ids), enc.dim), dtype=np.float32)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    pos = 0
    while pos < len(order):
        # grow the batch while the padded size stays within the token budget (lengths ascend)
        end = pos + 1
        while end < len(order) and (end + 1 - pos) * len(chunk_ids[order[end]]) <= batch_tokens:
            end += 1
        batch = [chunk_ids[j] for j in order[pos:end]]
        width = max(len(b) for b in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, b in enumerate(batch):
            input_ids[r, : len(b)] = torch.tensor(b)
            mask[r, : len(b)] = 1
        vectors[order[pos:end]] = enc.encode(input_ids, mask).numpy()
        pos = end
    # chunks were made note by note, so each note's chunks are one run of rows
    owner_arr, length_arr = np.asarray(owner), np.asarray(lengths)
    starts = np.r_[0, np.flatnonzero(np.diff(owner_arr)) + 1, owner_arr.size]
    out = np.zeros((len(texts), enc.dim), dtype=np.float32)
    for a, b in zip(starts[:-1], starts[1:]):
        out[owner_arr[a]] = pool_chunks(vectors[a:b], length_arr[a:b])
    return out


def special_tokens_around(tok) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer puts before and after a text ([CLS] and [SEP] for BERT)."""
    plain = tok("a", add_special_tokens=False)["input_ids"]
    full = tok("a")["input_ids"]
    for k in range(len(full) - len(plain) + 1):
        if full[k : k + len(plain)] == plain:
            return full[:k], full[k + len(plain) :]
    raise ValueError("cannot tell the tokenizer's special tokens apart from the text")


class EmbeddingCache:
    """Vectors by (note_id, text hash) for one model fingerprint: Parquet parts in one folder."""

    def __init__(self, root: Path, fingerprint: str):
        self.dir = Path(root) / hashlib.sha1(fingerprint.encode()).hexdigest()[:16]
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "MODEL.txt").write_text(fingerprint + "\n")
        self.vectors: dict[tuple[str, str], np.ndarray] = {}
        for part in sorted(self.dir.glob("part-*.parquet")):
            t = pq.read_table(part)
            for nid, h, v in zip(
                t["note_id"].to_pylist(), t["text_sha256"].to_pylist(), t["embedding"].to_numpy(zero_copy_only=False)
            ):
                self.vectors[(nid, h)] = np.asarray(v, dtype=np.float32)
        self._next = len(list(self.dir.glob("part-*.parquet")))

    def add(self, keys: list[tuple[str, str]], vectors: np.ndarray) -> None:
        """Store one finished group of notes as a part; written atomically, so a crash loses at most
        the group in flight."""
        table = pa.table(
            {
                "note_id": [k[0] for k in keys],
                "text_sha256": [k[1] for k in keys],
                "embedding": pa.array(list(vectors), type=pa.list_(pa.float32())),
            }
        )
        tmp = self.dir / f".part-{self._next:06d}.tmp"
        pq.write_table(table, tmp)
        tmp.replace(self.dir / f"part-{self._next:06d}.parquet")
        self._next += 1
        for k, v in zip(keys, vectors):
            self.vectors[k] = v


def embed_feature_folder(
    enc: Encoder,
    features: Path,
    cache_root: Path,
    stride: int = 64,
    batch_tokens: int = 16384,
    notes_per_part: int = 256,
    progress: bool = True,
    after_part=None,
    slots: int = 16,
) -> EmbedResult:
    """Embed every note of notes_to_embed (cache misses only) and write the per-note and per-slot files."""
    features = Path(features)
    source = features / "notes_to_embed.parquet"
    if not source.exists():
        raise EmbedError(f"{source} not found: run `sepsis-fusion build` first")
    con = duckdb.connect()
    notes = con.sql(f"""SELECT note_id, stay_id, available_at, note_text, charttime, sequence_slot
                        FROM '{source}' WHERE note_id IS NOT NULL ORDER BY note_id""").fetchall()
    beyond = [n for n in notes if not 0 <= n[5] < slots]
    if beyond:
        raise EmbedError(
            f"{source}: note {beyond[0][0]} has sequence_slot {beyond[0][5]}, but the note sequence has {slots} "
            "slots: dbt's note_sequence_length differs from the embedder's; rebuild with the same length"
        )
    cache = EmbeddingCache(cache_root, model_fingerprint(enc, stride))
    keys = [(n[0], text_hash(clean_text(n[3]))) for n in notes]
    missing = [i for i, k in enumerate(keys) if k not in cache.vectors]
    missing.sort(key=lambda i: len(notes[i][3] or ""))  # similar lengths together: less padding
    spent = 0.0
    with tqdm(total=len(missing), unit="note", desc="embedding notes", disable=not progress) as bar:
        for start in range(0, len(missing), notes_per_part):
            group = missing[start : start + notes_per_part]
            t0 = time.perf_counter()
            vectors = embed_texts(enc, [notes[i][3] for i in group], stride, batch_tokens)
            spent += time.perf_counter() - t0
            cache.add([keys[i] for i in group], vectors)
            bar.update(len(group))
            if after_part is not None:
                after_part(start // notes_per_part)
    dim = enc.dim
    matrix = np.stack([cache.vectors[k] for k in keys]) if keys else np.zeros((0, dim), dtype=np.float32)
    _write(
        features / "note_embeddings.parquet",
        pa.table(
            {
                "stay_id": pa.array([n[1] for n in notes], pa.int64()),
                "note_id": [n[0] for n in notes],
                "event_timestamp": pa.array([n[2] for n in notes], pa.timestamp("us")),
                "charttime": pa.array([n[4] for n in notes], pa.timestamp("us")),
                "sequence_slot": pa.array([n[5] for n in notes], pa.int32()),
                "embedding": pa.array(list(matrix), type=pa.list_(pa.float32())),
            }
        ),
    )
    _write_slots(notes, matrix, features, slots)
    return EmbedResult(
        notes=len(notes),
        embedded=len(missing),
        stays_with_notes=len({n[1] for n in notes}),
        slots=slots,
        seconds_encoding=spent,
    )


def _write_slots(notes: list[tuple], matrix: np.ndarray, features: Path, slots: int) -> None:
    """note_slot_<j>.parquet for every slot j < N (empty files too, so every Feast view has its source):
    stay_id, event_timestamp = created_timestamp = available_at, the note's charttime (seconds since
    1970, for its age at serving time) and its vector."""
    for slot in range(slots):
        rows = [i for i, n in enumerate(notes) if n[5] == slot]
        available = pa.array([notes[i][2] for i in rows], pa.timestamp("us"))
        charted = np.array([notes[i][4] for i in rows], dtype="datetime64[s]")
        table = pa.table(
            {
                "stay_id": pa.array([notes[i][1] for i in rows], pa.int64()),
                "event_timestamp": available,
                "created_timestamp": available,
                "charttime_unix_s": pa.array(charted.astype(np.int64), pa.int64()),
                "note_id": pa.array([notes[i][0] for i in rows], pa.string()),
                "embedding": pa.array([matrix[i] for i in rows], type=pa.list_(pa.float32())),
            }
        )
        _write(features / slot_file(slot), table)


def _write(path: Path, table: pa.Table) -> None:
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
