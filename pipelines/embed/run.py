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
import json
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


# Padded tokens per encoder batch when none is asked for. On a CPU small batches are fastest (fp32 and bf16
# alike, MiniLM and the BERT-base shape: bench/bench_embed.py's sweep, docs/EMBEDDINGS.md); a GPU wants big ones.
CPU_BATCH_TOKENS = 2048
GPU_BATCH_TOKENS = 16384


def default_batch_tokens(device: torch.device) -> int:
    return CPU_BATCH_TOKENS if device.type == "cpu" else GPU_BATCH_TOKENS


def embed_texts(enc: Encoder, texts: list[str], stride: int = 64, batch_tokens: int | None = None) -> np.ndarray:
    """One pooled vector per text: chunks of at most enc.max_length tokens overlapping by `stride`,
    encoded in length-sorted batches of about `batch_tokens` padded tokens (None: the device's default),
    pooled by token count."""
    if batch_tokens is None:
        batch_tokens = default_batch_tokens(enc.device)
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


READ_ROWS = 8192  # notes read from notes_to_embed.parquet at a time


class EmbeddingCache:
    """Vectors by (note_id, text hash) for one model fingerprint: Parquet parts in one folder. Only the keys
    are held in memory; the vectors stay in the parts until the output files are written from them."""

    def __init__(self, root: Path, fingerprint: str):
        self.dir = Path(root) / hashlib.sha1(fingerprint.encode()).hexdigest()[:16]
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "MODEL.txt").write_text(fingerprint + "\n")
        self.keys: set[tuple[str, str]] = set()
        for part in self.parts():
            t = pq.read_table(part, columns=["note_id", "text_sha256"])
            self.keys.update(zip(t["note_id"].to_pylist(), t["text_sha256"].to_pylist()))
        self._next = len(self.parts())

    def parts(self) -> list[Path]:
        return sorted(self.dir.glob("part-*.parquet"))

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self.keys

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
        self.keys.update(keys)


def notes_to_embed(features: Path) -> int:
    """How many notes notes_to_embed.parquet holds (0 for data without notes: no encoder is needed)."""
    source = Path(features) / "notes_to_embed.parquet"
    if not source.exists():
        raise EmbedError(f"{source} not found: run `sepsis-fusion build` first")
    with duckdb.connect() as con:
        (count,) = con.execute(f"SELECT count(*) FROM '{source}' WHERE note_id IS NOT NULL").fetchone()
    return int(count)


def embed_feature_folder(
    enc: Encoder | None,
    features: Path,
    cache_root: Path,
    stride: int = 64,
    batch_tokens: int | None = None,
    notes_per_part: int = 256,
    progress: bool = True,
    after_part=None,
    slots: int = 16,
) -> EmbedResult:
    """Embed every note of notes_to_embed (cache misses only) and write the per-note and per-slot files.
    `enc` None: the data has no notes (`notes_to_embed` is 0); the slot files are written empty, no encoder
    loaded.

    Streams: the notes are read READ_ROWS at a time (once to find the cache misses, once to embed them),
    and DuckDB writes the output files from the cache's parts, so neither the note texts nor the vectors
    are ever all in memory."""
    features = Path(features)
    source = features / "notes_to_embed.parquet"
    if not source.exists():
        raise EmbedError(f"{source} not found: run `sepsis-fusion build` first")
    con = duckdb.connect()
    notes = f"(SELECT * FROM '{source}' WHERE note_id IS NOT NULL)"
    beyond = con.execute(
        f"SELECT note_id, sequence_slot FROM {notes} WHERE NOT (sequence_slot >= 0 AND sequence_slot < {slots}) "
        "ORDER BY note_id LIMIT 1"
    ).fetchone()
    if beyond:
        raise EmbedError(
            f"{source}: note {beyond[0]} has sequence_slot {beyond[1]}, but the note sequence has {slots} "
            "slots: dbt's note_sequence_length differs from the embedder's; rebuild with the same length"
        )
    if enc is None:
        if notes_to_embed(features):
            raise EmbedError(f"{source} has notes to embed: an encoder is needed")
        _write_outputs(con, notes, {}, None, features, slots)
        (features / ENCODER_RECORD).unlink(missing_ok=True)  # no notes, no encoder behind them
        return EmbedResult(notes=0, embedded=0, stays_with_notes=0, slots=slots, seconds_encoding=0.0)
    cache = EmbeddingCache(cache_root, model_fingerprint(enc, stride))
    hashes: dict[str, str] = {}
    for ids, texts in _note_batches(con, notes):
        hashes.update((i, text_hash(clean_text(t))) for i, t in zip(ids, texts))
    missing = sum(k not in cache for k in hashes.items())
    embedded, spent, part = 0, 0.0, 0
    with tqdm(total=missing, unit="note", desc="embedding notes", disable=not progress) as bar:
        for ids, texts in _note_batches(con, notes) if missing else ():
            todo = sorted(
                {i: t for i, t in zip(ids, texts) if (i, hashes[i]) not in cache}.items(),
                key=lambda item: len(item[1] or ""),  # similar lengths together: less padding
            )
            for start in range(0, len(todo), notes_per_part):
                group = todo[start : start + notes_per_part]
                t0 = time.perf_counter()
                vectors = embed_texts(enc, [t for _, t in group], stride, batch_tokens)
                spent += time.perf_counter() - t0
                cache.add([(i, hashes[i]) for i, _ in group], vectors)
                embedded += len(group)
                bar.update(len(group))
                if after_part is not None:
                    after_part(part)
                part += 1
    _write_outputs(con, notes, hashes, cache, features, slots)
    write_encoder_record(features, enc, stride)
    (stays,) = con.execute(f"SELECT count(DISTINCT stay_id) FROM {notes}").fetchone()
    (count,) = con.execute(f"SELECT count(*) FROM {notes}").fetchone()
    return EmbedResult(notes=count, embedded=embedded, stays_with_notes=stays, slots=slots, seconds_encoding=spent)


ENCODER_RECORD = "note_encoder.json"  # beside the embeddings: which encoder made them (the model card names it)


def write_encoder_record(features: Path, enc: Encoder, stride: int) -> None:
    record = {
        "model": enc.model_id,
        "dim": enc.dim,
        "layers": int(getattr(enc.model.config, "num_hidden_layers", 0)) or None,
        "pooling": enc.pooling,
        "max_length": enc.max_length,
        "stride": stride,
        "precision": enc.precision,
        "fingerprint": model_fingerprint(enc, stride),
    }
    tmp = features / f".{ENCODER_RECORD}.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(features / ENCODER_RECORD)


def read_encoder_record(features: Path) -> dict | None:
    """The encoder that embedded the feature folder's notes; None before a run of `embed`."""
    path = Path(features) / ENCODER_RECORD
    return json.loads(path.read_text()) if path.exists() else None


def _note_batches(con, notes: str):
    """(note ids, texts) of the notes, READ_ROWS at a time, in note_id order."""
    query = f"SELECT note_id, note_text FROM {notes} ORDER BY note_id, stay_id"
    reader = con.sql(query).to_arrow_reader(READ_ROWS)
    for batch in reader:
        yield batch.column(0).to_pylist(), batch.column(1).to_pylist()


def _write_outputs(
    con, notes: str, hashes: dict[str, str], cache: EmbeddingCache | None, features: Path, slots: int
) -> None:
    """note_embeddings.parquet (every note, in note_id order) and note_slot_<j>.parquet for every slot j < N
    (empty files too, so every Feast view has its source): stay_id, event_timestamp = created_timestamp =
    available_at, the note's charttime (seconds since 1970, for its age at serving time) and its vector."""
    keys = {"note_id": pa.array(list(hashes), pa.string()), "text_sha256": pa.array(list(hashes.values()), pa.string())}
    con.register("note_keys", pa.table(keys))
    parts = cache.parts() if cache is not None else []
    if parts:
        listed = ", ".join(f"'{p}'" for p in parts)
        vectors = f"(SELECT DISTINCT ON (note_id, text_sha256) * FROM read_parquet([{listed}]))"
    else:
        vectors = "(SELECT NULL::VARCHAR AS note_id, NULL::VARCHAR AS text_sha256, NULL::FLOAT[] AS embedding LIMIT 0)"
    embeddings = features / "note_embeddings.parquet"
    _copy(
        con,
        f"""SELECT n.stay_id::BIGINT AS stay_id, n.note_id, n.available_at::TIMESTAMP AS event_timestamp,
                   n.charttime::TIMESTAMP AS charttime, n.sequence_slot::INTEGER AS sequence_slot, v.embedding
            FROM {notes} n JOIN note_keys k USING (note_id) JOIN {vectors} v USING (note_id, text_sha256)
            ORDER BY n.note_id, n.stay_id""",
        embeddings,
    )
    for slot in range(slots):
        _copy(
            con,
            f"""SELECT stay_id, event_timestamp, event_timestamp AS created_timestamp,
                       CAST(floor(epoch(charttime)) AS BIGINT) AS charttime_unix_s, note_id, embedding
                FROM '{embeddings}' WHERE sequence_slot = {slot} ORDER BY note_id, stay_id""",
            features / slot_file(slot),
        )


def _copy(con, query: str, path: Path) -> None:
    """Write the query's rows to a Parquet file, atomically (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    con.execute(f"COPY ({query}) TO '{tmp}' (FORMAT parquet)")
    tmp.replace(path)
