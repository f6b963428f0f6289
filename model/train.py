"""Training one fusion model: mini-batches, focal loss, L2 through weight decay, early stopping on the
validation AUROC (the best epoch's weights are kept). Seeded and deterministic on CPU."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from pydantic import ConfigDict
from pydantic.dataclasses import dataclass as settings

from .fusion import FocalLoss, FusionConfig, FusionModel
from .metrics import auroc
from .predictor import predict, tensors
from .preprocess import ModelInputs


@settings(config=ConfigDict(extra="forbid"))
class TrainConfig:
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 128
    max_epochs: int = 100
    patience: int = 10
    focal_alpha: float = 0.75
    focal_gamma: float = 2.0
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class History:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_auroc: list[float] = field(default_factory=list)
    best_epoch: int = -1

    @property
    def best_auroc(self) -> float:
        return self.val_auroc[self.best_epoch] if self.best_epoch >= 0 else float("nan")


def fit(
    fusion: FusionConfig,
    config: TrainConfig,
    train: ModelInputs,
    y_train: np.ndarray,
    val: ModelInputs,
    y_val: np.ndarray,
    on_epoch: Callable[[int, float, float], None] | None = None,
    early_stopping: bool = True,
) -> tuple[FusionModel, History]:
    """Train up to max_epochs. With early stopping, stop after `patience` epochs without a better
    validation AUROC and keep the best epoch's weights; without, train max_epochs and keep the last."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = FusionModel(fusion)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = FocalLoss(config.focal_alpha, config.focal_gamma)
    y_train_t = torch.from_numpy(np.asarray(y_train, dtype=np.float32))
    y_val_t = torch.from_numpy(np.asarray(y_val, dtype=np.float32))
    history, best_state, waited = History(), None, 0
    for epoch in range(config.max_epochs):
        model.train()
        order = torch.randperm(len(train), generator=generator).numpy()
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(*tensors(train, batch)), y_train_t[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        p_val = predict(model, val)
        with torch.no_grad():
            logits = torch.logit(torch.from_numpy(p_val).clamp(1e-7, 1 - 1e-7))
            history.val_loss.append(float(loss_fn(logits, y_val_t)))
        history.train_loss.append(total / max(len(order), 1))
        history.val_auroc.append(auroc(y_val, p_val))
        if on_epoch is not None:
            on_epoch(epoch, history.train_loss[-1], history.val_auroc[-1])
        if history.best_epoch < 0 or history.val_auroc[-1] > history.best_auroc:
            history.best_epoch, waited = epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            waited += 1
            if early_stopping and waited >= config.patience:
                break
    if early_stopping and best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model, history
