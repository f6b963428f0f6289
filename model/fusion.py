"""The fusion model: a static MLP, a BiLSTM over the steps of the lab and vital sequence, a BiLSTM over
the sequence of the last notes; each modality yields an encoding, the encodings are concatenated (early
fusion) and one head gives the logit of the outcome.

Sequences are oldest first; each step's vector carries its own time (the step's age, a note's age), so
the BiLSTMs see when, not only in which order. Masks mark the steps that exist (sequence_mask: the stay's
record had begun) and the slots that hold a note (note_mask): masked steps are skipped by packing, and a
stay with no step of a modality gets a learned "absent" encoding, so the head can tell absence from a
zero reading.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from .errors import StudyError


@dataclass(frozen=True)
class FusionConfig:
    static_dim: int
    sequence_dim: int
    note_dim: int
    static_hidden: tuple[int, int] = (64, 32)
    sequence_hidden: int = 32
    note_hidden: int = 32
    head_hidden: int = 32
    dropout: float = 0.2
    last_steps: int = 0  # the last this many steps of the sequence are read; 0: all
    use_static: bool = True
    use_sequence: bool = True
    use_notes: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FusionConfig:
        d = dict(d)
        d["static_hidden"] = tuple(d["static_hidden"])
        return cls(**d)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(
            m
            for m, on in (("static", self.use_static), ("sequence", self.use_sequence), ("notes", self.use_notes))
            if on
        )


class StaticMLP(nn.Module):
    """Two hidden layers with ReLU (the study's equations 1-3)."""

    def __init__(self, dim: int, hidden: tuple[int, int], dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden[0]),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden[0], hidden[1]),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.out_dim = hidden[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MaskedBiLSTM(nn.Module):
    """A BiLSTM over the present steps of each sequence; the encoding is the last forward and first
    backward hidden state (both directions over the present steps only)."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.lstm = nn.LSTM(dim, hidden, batch_first=True, bidirectional=True)
        self.absent = nn.Parameter(torch.zeros(2 * hidden))
        self.dropout = nn.Dropout(dropout)
        self.out_dim = 2 * hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # present steps moved to the front, in order, so packing sees them as one contiguous sequence
        lengths = mask.sum(dim=1)
        order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
        x = torch.gather(x * mask.unsqueeze(-1), 1, order.unsqueeze(-1).expand_as(x))
        out = self.absent.expand(x.shape[0], -1).clone()
        present = lengths > 0
        if present.any():
            packed = pack_padded_sequence(x[present], lengths[present].cpu(), batch_first=True, enforce_sorted=False)
            _, (h, _) = self.lstm(packed)
            out[present] = torch.cat([h[0], h[1]], dim=1)
        return self.dropout(out)


class FusionModel(nn.Module):
    def __init__(self, config: FusionConfig):
        super().__init__()
        self.config = config
        if not config.modalities:
            raise StudyError("the fusion model needs at least one modality")
        dims = 0
        if config.use_static:
            self.static = StaticMLP(config.static_dim, config.static_hidden, config.dropout)
            dims += self.static.out_dim
        if config.use_sequence:
            self.sequence = MaskedBiLSTM(config.sequence_dim, config.sequence_hidden, config.dropout)
            dims += self.sequence.out_dim
        if config.use_notes:
            self.notes = MaskedBiLSTM(config.note_dim, config.note_hidden, config.dropout)
            dims += self.notes.out_dim
        self.head = nn.Sequential(
            nn.Linear(dims, config.head_hidden), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(config.head_hidden, 1)
        )

    def forward(
        self,
        static: torch.Tensor,
        sequence: torch.Tensor,
        sequence_mask: torch.Tensor,
        notes: torch.Tensor,
        note_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Logits (n,) from static (n, S), sequence (n, K, F), notes (n, K, D) and boolean masks (n, K)."""
        parts = []
        if self.config.use_static:
            parts.append(self.static(static))
        if self.config.use_sequence:
            steps = self.config.last_steps or sequence.shape[1]
            parts.append(self.sequence(sequence[:, -steps:], sequence_mask[:, -steps:]))
        if self.config.use_notes:
            parts.append(self.notes(notes, note_mask))
        return self.head(torch.cat(parts, dim=1)).squeeze(1)


class FocalLoss(nn.Module):
    """Binary focal loss (Lin et al. 2017): alpha weighs the positive class, gamma down-weighs easy
    examples. gamma = 0 gives class-weighted binary cross-entropy (the study's BCE baseline)."""

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0):
        super().__init__()
        if not 0 < alpha < 1 or gamma < 0:
            raise StudyError(f"focal loss needs 0 < alpha < 1 and gamma >= 0 (got alpha={alpha}, gamma={gamma})")
        self.alpha, self.gamma = alpha, gamma

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = targets.to(logits.dtype)
        bce = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        p_true = torch.exp(-bce)  # the probability given to the true class
        weight = targets * self.alpha + (1 - targets) * (1 - self.alpha)
        return (weight * (1 - p_true) ** self.gamma * bce).mean()
