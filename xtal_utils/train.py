"""Training: one optimiser step in two loops, for the CPU and CUDA, with checkpoints and resume.

- :func:`fit` runs epochs over a fixed training set (:class:`TrainConfig`), with early stopping on the
  validation top-1 accuracy (the best weights are restored at the end) and DDP.
- :func:`fit_stream` runs a budget of steps over a stream of fresh patterns (:class:`StreamConfig`).
- Mixed precision (bfloat16 autocast) on CUDA; full precision on the CPU, unless a stream run asks for
  bfloat16 (``StreamConfig.precision``), which it then gets where the processor has bfloat16 instructions.
- Checkpoints are written atomically (every epoch, or every ``checkpoint_every`` steps); given an existing
  checkpoint, training resumes from it. They hold only tensors and plain values and are read with
  ``torch.load(weights_only=True)``.
- Each epoch's randomness (order, dropout, augmentations) is seeded from ``(seed, epoch)`` alone, and each
  stream step's from ``(seed, step)``, so in deterministic mode a resumed run ends with the same weights
  as one that was never stopped.
- Multi-GPU through torch's DistributedDataParallel: launch with ``torchrun`` (see :func:`main`);
  each rank takes its share of every epoch and rank 0 writes the checkpoints.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from xtal_utils.config import atomic_path, cache_dir, default_device, seed_everything, write_json_atomic
from xtal_utils.datasets import CrystalStream, PatternSource, epoch_generator
from xtal_utils.diffraction import Augmentation
from xtal_utils.models import MODELS, build_model, model_spec
from xtal_utils.pattern_sets import Grid
from xtal_utils.symmetry import n_classes


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20  # maximum number of passes over the training set
    batch_size: int = 64
    lr: float = 2e-3  # peak learning rate of the one-cycle schedule
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    patience: int = 0  # epochs without a better validation top-1 before stopping; 0 = never
    seed: int = 0
    deterministic: bool = False  # deterministic kernels (slower); needed for bit-identical resumes
    amp: bool = True  # bfloat16 autocast, on CUDA only
    device: str | None = None  # None: CUDA when available
    progress: bool = True  # tqdm bars


def _distributed() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _save_checkpoint(path: Path, model, optimizer, scheduler, state: dict, **config) -> None:
    """Write model, optimiser, scheduler, ``state`` and ``config`` (plain values) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save({"model_spec": model_spec(model), **config, "model_state": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), **state}, tmp)


def _optimizer(model: nn.Module, config) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def build(model: str, kind: str, *, seed: int, **options) -> nn.Module:
    """A fresh model of class ``model`` ('ResNet1d' or 'Transformer1d') with one output per class, its
    initial weights drawn after ``torch.manual_seed(seed)``: a run never depends on what ran before it."""
    torch.manual_seed(seed)
    return MODELS[model](n_classes(kind), **options)


def _cpu_flags() -> set[str]:
    """The instruction-set flags of this machine's CPU (Linux's /proc/cpuinfo); empty where unreadable."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def bf16_supported(device) -> bool:
    """Whether ``device`` computes in bfloat16 in hardware: a CUDA GPU that supports it, or a CPU with
    AVX512-BF16 or AMX-BF16 instructions (elsewhere torch emulates bfloat16, slower than float32)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


PRECISIONS = ("auto", "bf16", "float32")


def autocast_device(precision: str, device) -> str | None:
    """The device type to run bfloat16 autocast on for ``precision`` on ``device``, or None for float32.

    'auto' is bfloat16 on CUDA and float32 on the CPU; 'bf16' is bfloat16 wherever the hardware has it and
    float32 (with a warning) where it does not; 'float32' is float32 everywhere."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    kind = torch.device(device).type
    if precision == "float32" or (precision == "auto" and kind != "cuda"):
        return None
    if precision == "bf16" and not bf16_supported(device):
        warnings.warn(f"this {kind.upper()} has no bfloat16 instructions: training in float32 instead",
                      stacklevel=3)
        return None
    return kind


def _step(net: nn.Module, x, y, loss_fn, optimizer, autocast: str | None) -> torch.Tensor:
    """One optimiser step on the batch ``(x, y)``: the loss (under bfloat16 autocast on the device type
    ``autocast``; None: float32), its gradients, and the update; returns the loss."""
    with torch.autocast(autocast or "cpu", dtype=torch.bfloat16, enabled=autocast is not None):
        loss = loss_fn(net(x).float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def _resume(checkpoint: Path | None, device, spec: dict, model, optimizer, scheduler, state: dict) -> dict:
    """Load model, optimiser and scheduler from ``checkpoint`` when it exists; return the saved values of
    ``state``'s keys, or ``state`` unchanged when there is nothing to resume."""
    if not (checkpoint and checkpoint.exists()):
        return state
    saved = load_checkpoint(checkpoint, device)
    if saved["model_spec"] != spec:
        raise ValueError(f"checkpoint {checkpoint} holds a different model: {saved['model_spec']}")
    model.load_state_dict(saved["model_state"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    return {k: saved.get(k, v) for k, v in state.items()}


def load_checkpoint(path, device="cpu") -> dict:
    """Read a checkpoint safely (``weights_only=True``)."""
    return torch.load(path, map_location=device, weights_only=True)


def load_model(path, device=None) -> nn.Module:
    """Rebuild the model saved in a checkpoint, with its best weights, in eval mode."""
    device = default_device(device)
    state = load_checkpoint(path, device)
    model = build_model(state["model_spec"])
    model.load_state_dict(state["best_state"] or state["model_state"])
    return model.to(device).eval()


@torch.no_grad()
def predict(model: nn.Module, source, *, batch_size: int = 256, device=None) -> np.ndarray:
    """Logits (n, n_classes) of ``model`` on every sample of ``source``, in order."""
    device = default_device(device)
    model = model.to(device).eval()
    use_amp = torch.device(device).type == "cuda"
    chunks = []
    for x, _ in source.batches(batch_size, device=device):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
            chunks.append(model(x).float().cpu())
    return torch.cat(chunks).numpy() if chunks else np.zeros((0, 0), dtype=np.float32)


def _validate(model, source, batch_size, device, use_amp) -> tuple[float, float]:
    model.eval()
    loss, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in source.batches(batch_size, device=device):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                logits = model(x).float()
            loss += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            n += len(y)
    return loss / max(n, 1), correct / max(n, 1)


def fit(model: nn.Module, train_source, val_source, config: TrainConfig = TrainConfig(), *,
        checkpoint: str | Path | None = None, stop_after_epochs: int | None = None) -> list[dict]:
    """Train ``model`` and return its history, one dict per epoch.

    Args:
        model: e.g. :class:`~xtal_utils.models.ResNet1d`; moved to the device.
        train_source, val_source: sources from :mod:`xtal_utils.datasets`.
        config: the :class:`TrainConfig`.
        checkpoint: path of the checkpoint; if it exists, training resumes from it.
        stop_after_epochs: stop (as if interrupted) after this many epochs of this call.

    Returns:
        History rows: epoch, train_loss, val_loss, val_top1, lr, seconds, patterns_per_second.
        At the end the model holds the weights of the best validation epoch.
    """
    device = default_device(config.device)
    use_amp = config.amp and torch.device(device).type == "cuda"
    rank, world_size = _distributed()
    seed_everything(config.seed)
    if config.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    model = model.to(device)
    spec = model_spec(model)
    net = model
    if world_size > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device] if "cuda" in str(device) else None)

    n_train = len(train_source)
    steps_per_epoch = math.ceil(math.ceil(n_train / world_size) / config.batch_size)
    optimizer = _optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=max(1, config.epochs * steps_per_epoch), pct_start=0.15)

    state = {"epoch": 0, "history": [], "best_top1": -1.0, "best_state": None, "bad_epochs": 0}
    checkpoint = Path(checkpoint) if checkpoint else None
    state = _resume(checkpoint, device, spec, model, optimizer, scheduler, state)

    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    start_epoch, epochs_run = state["epoch"], 0
    for epoch in range(start_epoch, config.epochs):
        if config.patience and state["bad_epochs"] >= config.patience:
            break
        if stop_after_epochs is not None and epochs_run >= stop_after_epochs:
            break
        torch.manual_seed(int(epoch_generator(config.seed, epoch).initial_seed()))  # dropout etc.
        net.train()
        t0, total_loss, seen = time.perf_counter(), 0.0, 0
        batches = train_source.batches(config.batch_size, epoch=epoch, seed=config.seed, shuffle=True,
                                       device=device, rank=rank, world_size=world_size)
        bar = tqdm(batches, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
                   disable=not config.progress or rank != 0)
        for x, y in bar:
            loss = _step(net, x, y, loss_fn, optimizer, "cuda" if use_amp else None)
            if scheduler.last_epoch < scheduler.total_steps - 1:
                scheduler.step()
            total_loss += loss.item() * len(y)
            seen += len(y)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        seconds = time.perf_counter() - t0
        val_loss, val_top1 = _validate(model, val_source, config.batch_size * 2, device, use_amp)
        state["history"].append({
            "epoch": epoch + 1, "train_loss": total_loss / max(seen, 1), "val_loss": val_loss,
            "val_top1": val_top1, "lr": optimizer.param_groups[0]["lr"], "seconds": seconds,
            "patterns_per_second": seen * world_size / seconds,
        })
        if val_top1 > state["best_top1"]:
            state.update(best_top1=val_top1, bad_epochs=0,
                         best_state={k: v.detach().clone() for k, v in model.state_dict().items()})
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        epochs_run += 1
        if checkpoint and rank == 0:
            _save_checkpoint(checkpoint, model, optimizer, scheduler, state,
                             train_config=dataclasses.asdict(config))
    finished = state["epoch"] >= config.epochs or (config.patience and state["bad_epochs"] >= config.patience)
    if finished and state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    return copy.deepcopy(state["history"])


def train_cached(model: nn.Module, train_source, val_source, config: TrainConfig, *, data: dict,
                 name: str = "model") -> tuple[nn.Module, list[dict]]:
    """Train, or load the model a previous run trained with the same model, data and config.

    The checkpoint lives in ``data/cache/models/<key>/`` where the key hashes the model spec, the
    training config and ``data`` (a description of the training data precise enough to tell two data
    sets apart, e.g. their own cache keys). An interrupted run resumes from its last epoch. The caller
    draws the model's initial weights from ``config.seed`` (:func:`build`); the
    key's ``init`` marks this, so that models cached before it are trained again.

    Returns:
        The trained model (best weights, eval mode) and its history.
    """
    folder = cache_dir("models", {"model": model_spec(model), "train": dataclasses.asdict(config), "data": data,
                                  "init": "seeded"})  # models cached before the seeded start are not reused
    done = folder / "done.json"
    if done.exists():
        state = load_checkpoint(folder / "checkpoint.pt")
        model.load_state_dict(state["best_state"] or state["model_state"])
        return model.to(default_device(config.device)).eval(), state["history"]
    history = fit(model, train_source, val_source, config, checkpoint=folder / "checkpoint.pt")
    write_json_atomic(done, {"name": name, "epochs": len(history)})
    return model.eval(), history


# ---------------------------------------------------------------------------------------------
# Training on an endless stream, by a step budget


@dataclass(frozen=True)
class StreamConfig:
    """How a model is trained on a :class:`~xtal_utils.datasets.CrystalStream` by a budget of optimiser steps:
    the model, the stream's batches, the optimiser and its schedule.

    The learning rate rises linearly for ``warmup`` of the steps, then follows a cosine to zero. The
    defaults are the recipe of the study's balanced models (notebooks 02 and 04-07): clean patterns of
    fresh random crystals balanced over extinction groups, log intensities, label smoothing 0.1, 11,500
    steps of 64 crystals.
    """

    kind: str = "extinction_group"  # the targets: 'space_group' or 'extinction_group'
    steps: int = 11_500  # optimiser steps; patterns seen = steps x batch_size
    batch_size: int = 64  # crystals per batch
    lr: float = 2e-3  # peak learning rate
    weight_decay: float = 1e-4
    warmup: float = 0.03  # fraction of the steps
    label_smoothing: float = 0.1
    seed: int = 0  # root of the stream's batches and of each step's dropout (and of the initial weights)
    model: str = "ResNet1d"  # a class of xtal_utils.models.MODELS
    model_options: tuple = (("intensity", "log"),)  # (name, value) pairs for the model's class
    augmentation: Augmentation | None = None  # realism augmentations, drawn afresh for every pattern
    impurity: tuple | None = None  # (probability of a second phase, (low, high) of its height)
    crystals: tuple = ()  # (name, value) pairs for sample_crystals, e.g. (("orbit_scale", 2.5),)
    database_share: float = 1.0  # share of each batch drawn from a database, when training is given one
    pool_batches: int | None = None  # a finite pool of pool_batches x batch_size crystals; None = fresh ones
    prior_smoothing: float = 1.0  # pseudo-count per class of a classifier's database prior
    precision: str = "auto"  # 'auto': bfloat16 autocast on CUDA, float32 on the CPU; 'bf16': bfloat16 wherever
    #                          the hardware has it (a CPU with AVX512-BF16 or AMX), else float32; 'float32'
    eval_every: int = 0  # steps between evaluations on held-out crystals (a learning curve); 0: none
    patience: int = 0  # early stopping: evaluations without a higher held-out top-1 before training stops
    #                    and returns to its best weights; 0 runs every step
    min_delta: float = 0.0  # early stopping: a top-1 is higher only when it exceeds the best by more than this
    ema: float = 0.0  # decay of an exponential moving average of the weights, which is evaluated and returned
    #                   in their place; 0: none

    @property
    def patterns_seen(self) -> int:
        return self.steps * self.batch_size

    def build(self) -> nn.Module:
        """A fresh model of this config's class, targets and options, its initial weights from ``seed``
        (:func:`build`)."""
        return build(self.model, self.kind, seed=self.seed, **dict(self.model_options))

    @property
    def distinct_crystals(self) -> int:
        """Distinct random crystals the model can see: the pool, or every pattern of the stream."""
        return self.patterns_seen if self.pool_batches is None else self.pool_batches * self.batch_size

    def stream(self, simulator, seed: int, *, database=None, batch_size: int | None = None) -> CrystalStream:
        """The stream of this config's batches from ``seed`` (the config's own seed, or another one for
        calibration), made by ``simulator``; ``database`` (a StructureBatch) supplies ``database_share``
        of every batch."""
        return CrystalStream(simulator, self.kind, seed=seed, batch_size=batch_size or self.batch_size,
                             augmentation=self.augmentation, crystal_options=dict(self.crystals),
                             database=database, impurity=self.impurity, pool_batches=self.pool_batches,
                             database_share=0.0 if database is None else self.database_share)


def _stream_lr(config: StreamConfig):
    warm = max(1, int(config.warmup * config.steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, config.steps - warm))))

    return factor


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches, n_batches: int = 16) -> nn.Module:
    """Reset BatchNorm running statistics and re-estimate them as exact averages over ``n_batches``.

    On a stream that never repeats, a high learning rate leaves the running statistics behind the
    weights; evaluating with them makes accuracy swing from one checkpoint to the next. Call on a copy
    (``copy.deepcopy(model)``) when training goes on.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was_training = model.training
    model.train()
    for _, (x, _) in zip(range(n_batches), batches):
        model(x)
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.train(was_training)
    return model


@torch.no_grad()
def _update_average(average: dict, model: nn.Module, decay: float, step: int) -> None:
    """One step of the moving average of ``model``'s weights (its floating-point state), with the decay
    ramped up over the first steps as (1 + step) / (10 + step), so that the first weights do not linger."""
    decay = min(decay, (1 + step) / (10 + step))
    for name, value in model.state_dict().items():
        if value.is_floating_point():
            average[name].mul_(decay).add_(value.detach(), alpha=1 - decay)
        else:
            average[name].copy_(value)


def fit_stream(model: nn.Module, stream: CrystalStream, config: StreamConfig = StreamConfig(), *,
               checkpoint: str | Path | None = None, checkpoint_every: int = 500, evaluate=None,
               eval_every: int | None = None, stop_after: int | None = None, workers: int = 1,
               threads: int | None = None, device=None, progress: bool = True) -> dict:
    """Train ``model`` on ``stream`` for ``config.steps`` steps; the same weights whether resumed or not.

    Under ``torchrun`` (torch.distributed initialised), each rank trains on its share of every batch
    (:meth:`~xtal_utils.datasets.CrystalStream.batch`), gradients are averaged over the ranks, rank 0 writes
    the checkpoints, and every rank evaluates, so that all take the same early-stopping decision. BatchNorm
    takes its statistics over the whole batch on CUDA (SyncBatchNorm) and over each rank's share on the CPU,
    where torch has no SyncBatchNorm. On clean patterns, a model without dropout whose norm does not depend
    on the batch (or SyncBatchNorm) gets the weights of one process on the whole batch, up to the order of
    floating-point sums.

    Args:
        model: e.g. :class:`~xtal_utils.models.ResNet1d`.
        stream: batch ``s`` feeds step ``s``; its kind and batch size are the config's
            (:meth:`StreamConfig.stream`).
        config: the :class:`StreamConfig`; its optimiser, schedule, label smoothing and seed apply here.
        checkpoint: path; written atomically every ``checkpoint_every`` steps and at the end. If it
            exists, training resumes from it.
        checkpoint_every: steps between checkpoints, and the block over which ``history`` averages the loss.
        evaluate: optional ``evaluate(model, step) -> dict`` called every ``eval_every`` steps (None:
            ``config.eval_every``; 0: only at the end) and at the end, on the training model in eval mode
            (see :func:`recalibrate_batchnorm`); its rows go into the returned ``curve``. With ``config.patience``, its ``"top1"`` decides early
            stopping: training stops after ``config.patience`` evaluations without a value higher than the
            best by more than ``config.min_delta``, and the model returns to the weights of its best
            evaluation (the first, on ties). With ``config.ema``, the evaluations, early stopping and the
            returned model use the moving average of the weights.
        stop_after: stop (as if interrupted) once this many steps have been taken in this call.
        workers: background processes making batches on the CPU; 0 makes them in this process (as on a GPU).
        threads: torch threads of the training process; None leaves torch's choice.
        device: None: CUDA when available.
        progress: a tqdm bar over the steps.

    Returns:
        ``{"step", "history", "curve", "seconds", "data_seconds", "best_step", "stopped"}``: history has the
        mean training loss per ``checkpoint_every`` block; data_seconds is the time the step waited for
        batches; ``best_step`` is the step whose weights are returned under early stopping (else None) and
        ``stopped`` whether the patience ran out before ``config.steps``.
    """
    if (stream.kind, stream.batch_size) != (config.kind, config.batch_size):
        raise ValueError(f"the stream gives {stream.kind} batches of {stream.batch_size}, "
                         f"the config asks for {config.kind} batches of {config.batch_size}")
    eval_every = config.eval_every if eval_every is None else eval_every
    if config.patience and not (evaluate is not None and eval_every):
        raise ValueError("early stopping (config.patience) needs an evaluate function and eval_every > 0")
    device = default_device(device)
    if threads:
        torch.set_num_threads(threads)
    rank, world_size = _distributed()
    model = model.to(device)
    spec = model_spec(model)
    net = model
    if world_size > 1:  # each rank trains on its share of every batch; BatchNorm statistics over the whole batch
        if config.batch_size % world_size:
            raise ValueError(f"batch_size {config.batch_size} does not split into {world_size} equal shares")
        if torch.device(device).type == "cuda":  # torch has no SyncBatchNorm on the CPU
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device] if "cuda" in str(device) else None)
    optimizer = _optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _stream_lr(config))
    state = {"step": 0, "history": [], "curve": [], "seconds": 0.0, "data_seconds": 0.0, "best": None,
             "stopped": False, "average": None}
    checkpoint = Path(checkpoint) if checkpoint else None
    state = _resume(checkpoint, device, spec, model, optimizer, scheduler, state)
    if config.ema and state["average"] is None:
        state["average"] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def averaged() -> nn.Module:
        """The model with the moving average's weights (a copy), or the model itself without one."""
        if not config.ema:
            return model
        copied = copy.deepcopy(model)
        copied.load_state_dict(state["average"])
        return copied
    autocast = autocast_device(config.precision, device)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    def save():
        if checkpoint and rank == 0:
            _save_checkpoint(checkpoint, model, optimizer, scheduler, state,
                             stream_config=dataclasses.asdict(config))

    def run_evaluation():
        if evaluate is not None:
            model.eval()
            scored = averaged().eval()
            row = {"step": state["step"], "patterns": state["step"] * stream.batch_size,
                   "seconds": state["seconds"], **evaluate(scored, state["step"])}
            state["curve"].append(row)
            best = state["best"]
            if config.patience and (best is None or row["top1"] > best["top1"] + config.min_delta):
                state["best"] = {"step": state["step"], "top1": row["top1"],
                                 "weights": copy.deepcopy(scored.state_dict())}
            elif config.patience:
                since = sum(r["step"] > best["step"] for r in state["curve"])
                state["stopped"] = since >= config.patience
            model.train()

    start = state["step"]
    end = config.steps if stop_after is None else min(config.steps, start + stop_after)
    if state["stopped"]:
        end = start
    batches = stream.batches(start=start, stop=end, device=device,
                             workers=workers if torch.device(device).type == "cpu" else 0,
                             rank=rank, world_size=world_size)
    block_loss, block_n = 0.0, 0
    bar = tqdm(total=config.steps, initial=start, desc="training", unit="step", disable=not progress or rank != 0)
    model.train()
    t_last = time.perf_counter()
    for step in range(start, end):
        t0 = time.perf_counter()
        x, y = next(batches)
        t1 = time.perf_counter()
        state["data_seconds"] += t1 - t0
        torch.manual_seed(int(np.random.SeedSequence([config.seed, step, 2]).generate_state(1)[0]))
        loss = _step(net, x, y, loss_fn, optimizer, autocast)
        scheduler.step()
        if config.ema:
            _update_average(state["average"], model, config.ema, step)
        block_loss += loss.item()
        block_n += 1
        state["step"] = step + 1
        now = time.perf_counter()
        state["seconds"] += now - t_last
        t_last = now
        bar.update()
        if state["step"] % checkpoint_every == 0 or state["step"] == config.steps:
            state["history"].append({"step": state["step"], "train_loss": block_loss / block_n,
                                     "lr": optimizer.param_groups[0]["lr"], "seconds": state["seconds"]})
            block_loss, block_n = 0.0, 0
            bar.set_postfix(loss=f"{state['history'][-1]['train_loss']:.3f}")
        if eval_every and state["step"] % eval_every == 0 and state["step"] < config.steps:
            run_evaluation()
            t_last = time.perf_counter()  # evaluation time is not training time
        if state["step"] % checkpoint_every == 0 or state["stopped"]:
            save()
        if state["stopped"]:
            break
    bar.close()
    del batches
    if state["step"] == config.steps and (not state["curve"] or state["curve"][-1]["step"] != state["step"]):
        run_evaluation()
    save()
    if world_size > 1:  # no rank goes on (or resumes) before rank 0's checkpoint is written
        torch.distributed.barrier()
    model.eval()
    out = {k: copy.deepcopy(v) for k, v in state.items() if k not in ("best", "average")}
    out["best_step"] = None
    if config.ema:
        model.load_state_dict(state["average"])
    if state["best"] is not None:
        model.load_state_dict(state["best"]["weights"])
        out["best_step"] = state["best"]["step"]
    return out


def main(argv: list[str] | None = None) -> None:
    """Train from the command line, on stored patterns or on the fresh-crystal stream; under torchrun, on
    several processes, GPUs or nodes with DDP.

        torchrun --nproc_per_node=4 -m xtal_utils.train patterns.npz --kind extinction_group --out ckpt.pt
        torchrun --nproc_per_node=8 -m xtal_utils.train --stream --steps 200000 --batch-size 512 \
            --n-points 8192 --out run.pt

    The .npz holds ``patterns`` (n, n_points), ``space_group`` (n,) and ``split`` (n,) with values
    'train' and 'val'. ``--stream`` trains by :class:`StreamConfig` (the study's recipe, with the options
    given) on fresh random crystals made by every rank for its share of each batch; ``--out`` is the
    checkpoint, resumed when it exists, and holds the final model.
    """
    parser = argparse.ArgumentParser(description="Train a pattern classifier on stored patterns or the stream.")
    parser.add_argument("patterns", type=Path, nargs="?", help="stored patterns (.npz); not with --stream")
    parser.add_argument("--stream", action="store_true", help="train on fresh random crystals (StreamConfig)")
    parser.add_argument("--kind", default="extinction_group", choices=["space_group", "extinction_group"])
    parser.add_argument("--model", default="ResNet1d", choices=sorted(MODELS))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=StreamConfig.steps, help="--stream: optimiser steps")
    parser.add_argument("--n-points", type=int, default=1024, help="--stream: points of the 5-90 degree grid")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS, help="--stream: see StreamConfig")
    parser.add_argument("--workers", type=int, default=1, help="--stream, on the CPU: processes making batches")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="checkpoint path (resumed if present)")
    args = parser.parse_args(argv)
    if args.stream == (args.patterns is not None):
        parser.error("give either a patterns file or --stream")

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = None
    if world_size > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
        if torch.cuda.is_available():
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local_rank)
            device = f"cuda:{local_rank}"
        else:
            device = "cpu"
    if args.stream:
        _stream_main(args, device)
        if world_size > 1:
            torch.distributed.destroy_process_group()
        return
    data = np.load(args.patterns)
    split = data["split"]
    sources = {s: PatternSource(data["patterns"][split == s], data["space_group"][split == s], args.kind)
               for s in ("train", "val")}
    model = MODELS[args.model](n_classes(args.kind))
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=device)
    history = fit(model, sources["train"], sources["val"], config, checkpoint=args.out)
    if _distributed()[0] == 0:
        last = history[-1] if history else {}
        print(f"trained {len(history)} epochs; last val top-1 {last.get('val_top1', float('nan')):.3f}")
    if world_size > 1:
        torch.distributed.destroy_process_group()


def _stream_main(args, device) -> None:
    config = StreamConfig(kind=args.kind, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                          seed=args.seed, model=args.model, precision=args.precision)
    grid = Grid(n_points=args.n_points, fwhm=0.1)  # the study's clean patterns, 5 to 90 degrees
    model = config.build()
    stream = config.stream(grid.simulator(device or "cpu"), args.seed)
    state = fit_stream(model, stream, config, checkpoint=args.out, workers=args.workers, device=device)
    if _distributed()[0] == 0:
        print(f"trained {state['step']} steps of {args.batch_size} in {state['seconds'] / 60:.1f} min; "
              f"last loss {state['history'][-1]['train_loss']:.3f}" if state["history"] else "nothing to train")


if __name__ == "__main__":
    main()
