"""Note embeddings: chunking, pooling against direct model calls, cache and resume, the offline error."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import SENTENCES

from sepsis_fusion.pipelines.embed import encoder as encoder_module
from sepsis_fusion.pipelines.embed.chunks import chunk_spans, clean_text
from sepsis_fusion.pipelines.embed.encoder import EmbedError, EncoderNotFound, load_encoder, model_fingerprint
from sepsis_fusion.pipelines.embed.run import (
    CPU_BATCH_TOKENS,
    GPU_BATCH_TOKENS,
    default_batch_tokens,
    embed_feature_folder,
    embed_texts,
    read_encoder_record,
    slot_file,
    special_tokens_around,
)


@pytest.fixture()
def encoder(tiny_bert, monkeypatch):
    """fp32, so that the pipeline's vectors can be held to a direct fp32 model call."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return load_encoder(str(tiny_bert), pooling="mean", device="cpu", max_length=16, precision="fp32")


def direct(enc, ids: list[int], pooling: str = "mean") -> np.ndarray:
    """The model called on one token sequence, pooled, without the pipeline."""
    with torch.no_grad():
        out = enc.model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    hidden = out.last_hidden_state[0]
    return (hidden[0] if pooling == "cls" else hidden.mean(dim=0)).numpy()


def test_chunk_spans_cover_every_token_with_the_overlap():
    assert chunk_spans(0, 14, 4) == [(0, 0)]
    assert chunk_spans(14, 14, 4) == [(0, 14)]
    spans = chunk_spans(40, 14, 4)
    assert spans == [(0, 14), (10, 24), (20, 34), (30, 40)]
    assert all(b - a <= 14 for a, b in spans)
    assert all(prev[1] - nxt[0] == 4 for prev, nxt in zip(spans, spans[1:]))
    with pytest.raises(ValueError, match="must exceed the overlap"):
        chunk_spans(40, 4, 4)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_short_note_equals_a_direct_model_call(encoder, pooling):
    encoder.pooling = pooling
    text = "New multifocal airspace opacities."
    ids = encoder.tokenizer(text)["input_ids"]
    assert len(ids) <= encoder.max_length
    ours = embed_texts(encoder, [text, "The lungs are clear."], stride=4)[0]
    np.testing.assert_allclose(ours, direct(encoder, ids, pooling), atol=1e-5)


def test_long_note_is_the_token_weighted_mean_of_its_chunks(encoder):
    text = " ".join(SENTENCES[:6])
    plain = encoder.tokenizer(text, add_special_tokens=False)["input_ids"]
    prefix, suffix = special_tokens_around(encoder.tokenizer)
    room = encoder.max_length - len(prefix) - len(suffix)
    spans = chunk_spans(len(plain), room, 4)
    assert len(spans) > 3
    expected = sum((b - a) * direct(encoder, prefix + plain[a:b] + suffix) for a, b in spans) / sum(
        b - a for a, b in spans
    )
    np.testing.assert_allclose(embed_texts(encoder, [text], stride=4)[0], expected, atol=1e-5)
    # batching changes nothing: one chunk per batch against all in one
    np.testing.assert_allclose(
        embed_texts(encoder, [text, "short"], stride=4, batch_tokens=16),
        embed_texts(encoder, [text, "short"], stride=4, batch_tokens=100_000),
        atol=1e-5,
    )


def test_batches_on_a_cpu_hold_the_cpu_budget_by_default(encoder):
    assert default_batch_tokens(torch.device("cpu")) == CPU_BATCH_TOKENS == 2048
    assert default_batch_tokens(torch.device("cuda")) == GPU_BATCH_TOKENS == 16384
    padded = []
    hook = encoder.model.register_forward_pre_hook(
        lambda module, args, kwargs: padded.append(kwargs["input_ids"].numel()), with_kwargs=True
    )
    texts = [SENTENCES[i % len(SENTENCES)] for i in range(400)]
    try:
        vectors = embed_texts(encoder, texts, stride=4)
    finally:
        hook.remove()
    assert len(padded) > 1 and max(padded) <= CPU_BATCH_TOKENS
    np.testing.assert_allclose(vectors, embed_texts(encoder, texts, stride=4, batch_tokens=100_000), atol=1e-5)


def test_empty_note_and_invalid_utf8(encoder):
    broken = b"pleural \xff\xfe effusion".decode("utf-8", "surrogateescape")
    vectors = embed_texts(encoder, ["", broken, None], stride=4)
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)
    np.testing.assert_allclose(
        vectors[1], embed_texts(encoder, ["pleural \ufffd\ufffd effusion"], stride=4)[0], atol=1e-6
    )
    assert clean_text(broken) == "pleural \ufffd\ufffd effusion"


SLOTS = 3


def write_features(folder: Path, texts: dict[str, str], slots: int = SLOTS) -> None:
    """A feature folder as dbt writes it: the notes of stay 1, ten minutes apart, numbered into slots."""
    t0 = dt.datetime(2150, 1, 1, 10)
    ids = sorted(texts)
    pq.write_table(
        pa.table(
            {
                "note_id": ids,
                "stay_id": pa.array([1] * len(ids), pa.int64()),
                "charttime": [t0 + dt.timedelta(minutes=10 * i - 30) for i in range(len(ids))],
                "available_at": [t0 + dt.timedelta(minutes=10 * i) for i in range(len(ids))],
                "sequence_slot": pa.array([i % slots for i in range(len(ids))], pa.int32()),
                "note_text": [texts[i] for i in ids],
            }
        ),
        folder / "notes_to_embed.parquet",
    )


def test_cache_hits_misses_and_resume_after_interruption(encoder, tmp_path, capfd):
    texts = {f"n{i}": f"{SENTENCES[i]} SECRET-TEXT-{i}" for i in range(5)}
    write_features(tmp_path, texts)
    cache = tmp_path / "cache"

    def interrupt(part: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed_feature_folder(
            encoder, tmp_path, cache, notes_per_part=2, after_part=interrupt, stride=4, progress=False, slots=SLOTS
        )
    resumed = embed_feature_folder(encoder, tmp_path, cache, notes_per_part=2, stride=4, progress=False, slots=SLOTS)
    assert resumed.embedded == 3  # the first group of 2 was kept
    assert embed_feature_folder(encoder, tmp_path, cache, stride=4, progress=False, slots=SLOTS).embedded == 0
    texts["n3"] = "The lungs are clear."
    write_features(tmp_path, texts)
    changed = embed_feature_folder(encoder, tmp_path, cache, stride=4, progress=False, slots=SLOTS)
    assert changed.embedded == 1 and changed.notes == 5 and changed.stays_with_notes == 1

    notes = pq.read_table(tmp_path / "note_embeddings.parquet").to_pandas().set_index("note_id")
    np.testing.assert_allclose(
        np.stack(notes.loc["n3", "embedding"]).ravel(),
        embed_texts(encoder, ["The lungs are clear."], stride=4)[0],
        atol=1e-6,
    )
    # each slot file holds its notes (number mod 3), keyed on their availability, each with its own vector
    for slot, members in enumerate((["n0", "n3"], ["n1", "n4"], ["n2"])):
        rows = pq.read_table(tmp_path / slot_file(slot)).to_pandas()
        assert rows.note_id.tolist() == members
        assert (rows.event_timestamp == notes.loc[members, "event_timestamp"].to_numpy()).all()
        assert (rows.created_timestamp == rows.event_timestamp).all()
        charted = notes.loc[members, "charttime"].to_numpy().astype("datetime64[s]").astype(np.int64)
        assert rows.charttime_unix_s.tolist() == charted.tolist()
        for note, vector in zip(members, rows.embedding):
            np.testing.assert_allclose(vector, notes.loc[note, "embedding"], atol=0)
    out = capfd.readouterr()
    assert "SECRET-TEXT" not in out.out + out.err


def test_other_settings_never_reuse_cached_vectors(tiny_bert, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    write_features(tmp_path, {f"n{i}": SENTENCES[i] for i in range(5)})
    mean = load_encoder(str(tiny_bert), pooling="mean", device="cpu", max_length=16, precision="fp32")
    cls = load_encoder(str(tiny_bert), pooling="cls", device="cpu", max_length=16, precision="fp32")
    assert embed_feature_folder(mean, tmp_path, tmp_path / "c", stride=4, progress=False, slots=SLOTS).embedded == 5
    assert embed_feature_folder(cls, tmp_path, tmp_path / "c", stride=4, progress=False, slots=SLOTS).embedded == 5


def test_a_note_in_a_slot_beyond_the_sequence_length_is_refused(encoder, tmp_path):
    """dbt numbered the notes modulo 5, the embedder has 3 slots: the error names the file and both lengths."""
    write_features(tmp_path, {f"n{i}": SENTENCES[i] for i in range(5)}, slots=5)
    with pytest.raises(EmbedError, match=r"notes_to_embed.parquet: note n3 has sequence_slot 3.*3 slots"):
        embed_feature_folder(encoder, tmp_path, tmp_path / "c", stride=4, progress=False, slots=SLOTS)
    assert not (tmp_path / "note_embeddings.parquet").exists()


def test_offline_missing_model_says_how_to_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(EncoderNotFound) as err:
        load_encoder("emilyalsentzer/Bio_ClinicalBERT")
    message = str(err.value)
    assert "HF_HUB_OFFLINE is set" in message and "--encoder" in message and "minilm" in message
    with pytest.raises(EncoderNotFound, match="To fix"):
        load_encoder(str(tmp_path / "no-such-folder"))


def test_packaged_minilm_loads_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = load_encoder("minilm", device="cpu")
    assert enc.dim == 384
    assert np.isfinite(embed_texts(enc, ["Diffuse bilateral airspace opacities."])).all()


def fake_cpuinfo(tmp_path: Path, monkeypatch, flags: str) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: fpu sse2 avx2 {flags}\n\n")
    monkeypatch.setattr(encoder_module, "CPUINFO", cpuinfo)


@pytest.mark.parametrize(
    ("flags", "chosen"), [("avx512f", "fp32"), ("avx512f avx512_bf16", "bf16"), ("amx_tile amx_bf16", "bf16")]
)
def test_auto_precision_is_bf16_only_on_a_cpu_with_native_bf16(tiny_bert, tmp_path, monkeypatch, flags, chosen):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fake_cpuinfo(tmp_path, monkeypatch, flags)
    enc = load_encoder(str(tiny_bert), device="cpu", max_length=16)
    assert enc.precision == chosen
    expected = torch.bfloat16 if chosen == "bf16" else torch.float32
    assert {p.dtype for p in enc.model.parameters()} == {expected}
    # asked for by name, a precision is kept whatever the CPU has
    assert load_encoder(str(tiny_bert), device="cpu", max_length=16, precision="fp32").precision == "fp32"
    assert load_encoder(str(tiny_bert), device="cpu", max_length=16, precision="bf16").precision == "bf16"
    with pytest.raises(EmbedError, match="precision must be one of auto, fp32, bf16 .got 'fp16'"):
        load_encoder(str(tiny_bert), device="cpu", precision="fp16")


def test_bf16_vectors_are_fp32_close_and_never_share_the_fp32_cache(encoder, tiny_bert, tmp_path):
    bf16 = load_encoder(str(tiny_bert), pooling="mean", device="cpu", max_length=16, precision="bf16")
    texts = list(SENTENCES[:6])
    full, half = embed_texts(encoder, texts, stride=4), embed_texts(bf16, texts, stride=4)
    assert half.dtype == np.float32  # pooled in fp32 whatever the forward pass
    cosine = (full * half).sum(axis=1) / np.linalg.norm(full, axis=1) / np.linalg.norm(half, axis=1)
    assert cosine.min() > 0.99 and np.abs(full - half).max() > 0  # close, and really computed in bf16
    # fp32 keeps the fingerprint it had before precisions existed, so existing caches stay valid
    assert model_fingerprint(encoder, 4).count("|") == 4 and model_fingerprint(bf16, 4).endswith("|bf16")

    write_features(tmp_path, {f"n{i}": SENTENCES[i] for i in range(5)})
    cache = tmp_path / "cache"
    assert embed_feature_folder(encoder, tmp_path, cache, stride=4, progress=False, slots=SLOTS).embedded == 5
    assert read_encoder_record(tmp_path)["precision"] == "fp32"
    assert embed_feature_folder(bf16, tmp_path, cache, stride=4, progress=False, slots=SLOTS).embedded == 5
    assert read_encoder_record(tmp_path)["precision"] == "bf16"
    served = pq.read_table(tmp_path / "note_embeddings.parquet").to_pandas().set_index("note_id")
    vectors = np.stack(served.loc[[f"n{i}" for i in range(5)], "embedding"])
    np.testing.assert_allclose(vectors, half[:5], atol=0.02)  # bf16 rounding depends on the batch's shape
    assert embed_feature_folder(encoder, tmp_path, cache, stride=4, progress=False, slots=SLOTS).embedded == 0
