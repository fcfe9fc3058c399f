"""The epoch loop of :func:`train_unet`: optimisation steps, validation, best checkpoint, stopping."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .losses import _IGNORE, _dice_ce_loss, _fold_heavy, _iou_from_confusion
from .sampling import _PatchSampler

if TYPE_CHECKING:
    from .train import _TrainSettings


@dataclass
class _Prepared:
    """Normalised training/validation data, the sampler and the derived sizes."""

    tr_x: list
    tr_y: list
    sampler: _PatchSampler
    vx: np.ndarray | None
    vy: np.ndarray | None
    class_weights: list | None
    steps_per_epoch: int
    patch_size: int
    epochs: int
    batch_size: int
    n_classes: int

    @property
    def has_val(self) -> bool:
        return self.vx is not None


@dataclass
class _Setup:
    """Network, optimiser, schedule and precision settings on one device."""

    net: Any
    opt: Any
    sched: Any
    scaler: Any
    dev: Any
    dev_name: str
    use_amp: bool
    amp_dtype: Any
    channels_last: bool
    ce_weight: Any
    #: loss weight of the pixels coded ``class + n_classes`` (contacts between objects)
    heavy_weight: float = 1.0

    def to_dev(self, x, y=None):
        import torch

        xt = torch.from_numpy(x)[:, None].to(self.dev, non_blocking=True)
        if self.channels_last:
            xt = xt.contiguous(memory_format=torch.channels_last)
        yt = torch.from_numpy(y).to(self.dev, non_blocking=True) if y is not None else None
        return xt, yt

    def forward(self, xt):
        import torch

        if self.use_amp:
            with torch.autocast(device_type="cuda", dtype=self.amp_dtype):
                return self.net(xt)
        return self.net(xt)


@dataclass
class _LoopState:
    """What the epoch loop produces: history, the best checkpoint and why it stopped."""

    history: list = field(default_factory=list)
    best_score: float | None = None
    best_state: dict | None = None
    best_epoch: int | None = None
    since_best: int = 0
    stopped: bool = False
    step_global: int = 0
    t_start: float = field(default_factory=time.perf_counter)


def _evaluate(setup: _Setup, prep: _Prepared, n_classes: int, dice_weight: float):
    """Validation loss and per-class IoU over the validation tiles."""
    import torch

    net = setup.net
    net.eval()
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    loss_sum, n = 0.0, 0
    bs = prep.batch_size
    with torch.inference_mode():
        for b in range(0, len(prep.vx), bs):
            xt, yt = setup.to_dev(prep.vx[b : b + bs], prep.vy[b : b + bs])
            logits = setup.forward(xt).float()
            loss = _dice_ce_loss(logits, yt, n_classes, dice_weight, setup.ce_weight, setup.heavy_weight)
            loss_sum += float(loss) * len(xt)
            n += len(xt)
            pred = logits.argmax(1)
            yt, _ = _fold_heavy(yt, n_classes)
            valid = yt != _IGNORE
            idx = (yt[valid] * n_classes + pred[valid]).cpu().numpy()
            cm += np.bincount(idx, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    net.train()
    return loss_sum / max(n, 1), _iou_from_confusion(cm)


def _timing(state: _LoopState, prep: _Prepared, setup: _Setup) -> dict:
    """The progress fields of the callback's ``info``: progress, ETA and device."""
    total = prep.epochs * prep.steps_per_epoch
    elapsed = time.perf_counter() - state.t_start
    return {
        "progress": state.step_global / total,
        "eta_s": elapsed / state.step_global * (total - state.step_global),
        "device": setup.dev_name,
    }


def _train_epoch(epoch: int, s: _TrainSettings, setup: _Setup, prep: _Prepared, state: _LoopState, n_classes, callback):
    """One epoch of optimisation steps; returns the step losses (fewer when the callback stops)."""
    losses: list[float] = []
    for step in range(1, prep.steps_per_epoch + 1):
        batch = [prep.sampler.sample() for _ in range(prep.batch_size)]
        xt, yt = setup.to_dev(np.stack([b[0] for b in batch]), np.stack([b[1] for b in batch]))
        setup.opt.zero_grad(set_to_none=True)
        logits = setup.forward(xt)
        loss = _dice_ce_loss(logits.float(), yt, n_classes, s.dice_weight, setup.ce_weight, setup.heavy_weight)
        if setup.scaler is not None:
            setup.scaler.scale(loss).backward()
            setup.scaler.step(setup.opt)
            setup.scaler.update()
        else:
            loss.backward()
            setup.opt.step()
        setup.sched.step()
        state.step_global += 1
        losses.append(float(loss.detach()))
        if callback is not None:
            info = {
                "stage": "step",
                "epoch": epoch,
                "epochs": prep.epochs,
                "step": step,
                "steps": prep.steps_per_epoch,
                "loss": losses[-1],
                **_timing(state, prep, setup),
            }
            if callback(info):
                state.stopped = True
                break
    return losses


def _epoch_entry(epoch, losses, s: _TrainSettings, setup: _Setup, prep: _Prepared, n_classes, t_epoch) -> dict:
    """The history entry of one epoch (validation loss and IoU when there is validation data)."""
    entry: dict[str, Any] = {
        "epoch": epoch,
        "train_loss": float(np.mean(losses)),
        "lr": float(setup.opt.param_groups[0]["lr"]),
    }
    if prep.has_val:
        vloss, iou = _evaluate(setup, prep, n_classes, s.dice_weight)
        entry["val_loss"] = vloss
        entry["iou"] = [None if not np.isfinite(v) else float(v) for v in iou]
        entry["mean_iou"] = float(np.nanmean(iou)) if np.any(np.isfinite(iou)) else None
    else:
        entry["val_loss"] = None
        entry["iou"] = None
        entry["mean_iou"] = None
    entry["seconds"] = time.perf_counter() - t_epoch
    return entry


def _keep_best(entry: dict, s: _TrainSettings, setup: _Setup, prep: _Prepared, state: _LoopState) -> None:
    """Score the epoch (lower is better) and keep a CPU copy of the best weights."""
    if not prep.has_val:
        score = entry["train_loss"]
    elif s.monitor == "mean_iou":
        score = -(entry["mean_iou"] if entry["mean_iou"] is not None else 0.0)
    else:
        score = entry["val_loss"]
    if state.best_score is None or score < state.best_score - 1e-6:
        state.best_score, state.best_epoch, state.since_best = score, entry["epoch"], 0
        state.best_state = {k: v.detach().to("cpu", copy=True) for k, v in setup.net.state_dict().items()}
    else:
        state.since_best += 1


def _fit(s: _TrainSettings, setup: _Setup, prep: _Prepared, callback) -> _LoopState:
    """The epoch loop: train, evaluate, keep the best checkpoint, stop early or on request."""
    state = _LoopState()
    n_classes = prep.n_classes
    setup.net.train()
    for epoch in range(1, prep.epochs + 1):
        t_epoch = time.perf_counter()
        losses = _train_epoch(epoch, s, setup, prep, state, n_classes, callback)
        if not losses or (state.stopped and len(losses) < prep.steps_per_epoch and state.best_state is not None):
            break  # a partial epoch after a stop request is not evaluated
        entry = _epoch_entry(epoch, losses, s, setup, prep, n_classes, t_epoch)
        state.history.append(entry)
        _keep_best(entry, s, setup, prep, state)
        if callback is not None and not state.stopped:
            info = {
                "stage": "epoch",
                "epoch": epoch,
                "epochs": prep.epochs,
                "step": prep.steps_per_epoch,
                "steps": prep.steps_per_epoch,
                "loss": entry["train_loss"],
                "history": [dict(h) for h in state.history],
                "best_epoch": state.best_epoch,
                **_timing(state, prep, setup),
            }
            if callback(info):
                state.stopped = True
        if state.stopped:
            break
        if s.patience is not None and state.since_best >= int(s.patience):
            state.stopped = True
            break
    return state
