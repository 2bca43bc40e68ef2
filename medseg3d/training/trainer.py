"""The training loop: iterations, mixed precision, clipping, validation, checkpoints, logging.

The trainer is handed ready-made parts (model, loss, optimizer, scheduler, a batch source and a
validator) by :mod:`medseg3d.training.run`; it owns only the loop and its state. Its state after
iteration ``i`` is a pure function of the config and ``i``: batches are drawn by index (see
:mod:`medseg3d.training.sampling`), so ``--resume`` from a checkpoint continues bit-for-bit the run
that wrote it (on CPU; on CUDA up to the non-determinism of its kernels).
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from medseg3d.errors import CheckpointError
from medseg3d.io.atomic import atomic_write_text
from medseg3d.training.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from medseg3d.training.distributed import DistInfo, barrier, broadcast_object

logger = logging.getLogger(__name__)

Batch = dict[str, torch.Tensor]
#: ``validator(model) -> {"dice": mean foreground Dice, "dice/<label>": ...}``
Validator = Callable[[nn.Module], dict[str, float]]


class TrainingTerm(Protocol):
    """An addition to the training step with its own state (e.g. the adversarial term)."""

    def generator_loss(self, image, label, output, iteration: int) -> torch.Tensor | None:
        """Added to the segmentation loss before the backward pass (inside autocast)."""

    def after_step(self, image, label, output, iteration: int) -> dict[str, float]:
        """Runs after the network's optimizer step (e.g. a discriminator update)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class TrainState:
    iteration: int = 0  # optimizer steps done
    best_score: float = float("-inf")
    best_iteration: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0  # training time of the earlier calls of this run (kept across --resume)


def amp_settings(device: torch.device, amp: str) -> tuple[torch.dtype | None, bool]:
    """``(autocast dtype or None, use a grad scaler)`` for ``training.amp`` on ``device``."""
    if device.type != "cuda" or amp == "off":
        return None, False
    if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16, False
    return torch.float16, True


class Trainer:
    """Runs ``config["training"]["iterations"]`` optimizer steps and keeps the run folder current.

    Run folder: ``checkpoints/last.pt`` (every ``checkpoint_every`` iterations and at the end),
    ``checkpoints/best.pt`` (best validation Dice), ``metrics.csv`` (and TensorBoard events when
    the ``tensorboard`` package is installed).
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        loss: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        batches: Callable[[int], Iterator[Batch]],
        validator: Validator | None,
        config: dict[str, Any],
        run_dir: Path,
        device: torch.device,
        dist_info: DistInfo | None = None,
        term: TrainingTerm | None = None,
        progress: bool = True,
    ):
        self.model = model
        self.loss = loss
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.batches = batches
        self.validator = validator
        self.config = config
        self.run_dir = Path(run_dir)
        self.device = device
        self.dist = dist_info or DistInfo()
        self.term = term
        self.progress = progress and self.dist.is_main
        self.state = TrainState()
        training = config["training"]
        self.autocast_dtype, use_scaler = amp_settings(device, training["amp"])
        self.scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self._tensorboard = None
        self._csv_columns: list[str] = []
        self._csv_synced = False
        self._fit_started: float | None = None

    # --- state ------------------------------------------------------------------------------
    @property
    def bare_model(self) -> nn.Module:
        return self.model.module if hasattr(self.model, "module") else self.model

    def checkpoint_state(self) -> dict[str, Any]:
        state = {
            "iteration": self.state.iteration,
            "best_score": self.state.best_score,
            "best_iteration": self.state.best_iteration,
            "history": self.state.history,
            "seconds": self.elapsed(),
            "model": self.bare_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "config": self.config,
        }
        if self.term is not None:
            state["term"] = self.term.state_dict()
        return state

    def resume(self, path: Path | None = None) -> None:
        """Continue from ``path`` (default ``checkpoints/last.pt``)."""
        payload = load_checkpoint(path or self.checkpoint_dir / "last.pt", map_location=self.device)
        self.bare_model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        if self.term is not None:
            if "term" not in payload:
                raise CheckpointError(
                    "the checkpoint has no state of the extra training term (was it trained without it?)"
                )
            self.term.load_state_dict(payload["term"])
        self.state = TrainState(
            iteration=int(payload["iteration"]),
            best_score=float(payload["best_score"]),
            best_iteration=int(payload["best_iteration"]),
            history=list(payload["history"]),
            seconds=float(payload.get("seconds", 0.0)),
        )
        set_rng_state(payload["rng"])
        logger.info("resumed at iteration %d", self.state.iteration)

    def elapsed(self) -> float:
        """Seconds of training in this run so far, over every call (``--resume`` continues it)."""
        started = self._fit_started
        return self.state.seconds + (time.perf_counter() - started if started is not None else 0.0)

    def save(self, name: str) -> None:
        if self.dist.is_main:
            save_checkpoint(self.checkpoint_dir / f"{name}.pt", **self.checkpoint_state())

    # --- one step ---------------------------------------------------------------------------
    def train_step(self, batch: Batch) -> dict[str, float]:
        self.model.train()
        image = batch["image"].to(self.device, non_blocking=True)
        label = batch["label"].to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        autocast = (
            torch.autocast(self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        iteration = self.state.iteration
        metrics: dict[str, float] = {}
        with autocast:
            output = self.model(image)
            loss = self.loss(output, label)
            if self.term is not None:
                extra = self.term.generator_loss(image, label, output, iteration)
                if extra is not None:
                    metrics["seg_loss"] = float(loss.detach())
                    loss = loss + extra
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the loss is {loss.item()} at iteration {self.state.iteration}"
            )
        self.scaler.scale(loss).backward()
        clip = self.config["training"]["grad_clip"]
        if clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        metrics["loss"] = float(loss.detach())
        if self.term is not None:
            metrics.update(self.term.after_step(image, label, output, iteration))
        return metrics

    # --- the loop ---------------------------------------------------------------------------
    def fit(self, stop_after: int | None = None) -> TrainState:
        """Train up to ``training.iterations``; with ``stop_after``, stop (with a checkpoint)
        after that many iterations of this call, e.g. to fit a cluster job's time limit."""
        training = self.config["training"]
        total = training["iterations"]
        start = self.state.iteration
        self._fit_started = time.perf_counter()
        bar = self._progress_bar(start, total)
        running: dict[str, float] = {}
        try:
            for batch in self.batches(start):
                if self.state.iteration >= total:
                    break
                if stop_after is not None and self.state.iteration - start >= stop_after:
                    self.save("last")
                    break
                metrics = self.train_step(batch)
                self.state.iteration += 1
                iteration = self.state.iteration
                for key, value in metrics.items():
                    running[key] = 0.9 * running.get(key, value) + 0.1 * value
                row: dict[str, Any] | None = None
                if iteration % training["log_every"] == 0 or iteration == total:
                    row = {
                        "iteration": iteration,
                        "lr": self.optimizer.param_groups[0]["lr"],
                        **metrics,
                    }
                if iteration % training["validate_every"] == 0 or iteration == total:
                    scores = self.validate()
                    row = {**(row or {"iteration": iteration}), **scores}
                if row is not None:
                    row["seconds"] = round(self.elapsed(), 3)
                    self._log(row)
                if iteration % training["checkpoint_every"] == 0 or iteration == total:
                    self.save("last")
                if bar is not None:
                    bar.update(1)
                    postfix = {k: f"{v:.4f}" for k, v in running.items()}
                    if self.state.best_iteration >= 0:
                        postfix["best_dice"] = f"{self.state.best_score:.3f}"
                    bar.set_postfix(postfix, refresh=False)
        except KeyboardInterrupt:
            logger.warning(
                "interrupted at iteration %d; saving checkpoints/last.pt", self.state.iteration
            )
            self.save("last")
            raise
        finally:
            if bar is not None:
                bar.close()
            if self._tensorboard:
                self._tensorboard.close()
        return self.state

    def validate(self) -> dict[str, float]:
        """Validate on rank 0 (others wait); keep ``best.pt`` by mean foreground Dice."""
        scores: dict[str, float] = {}
        if self.validator is not None and self.dist.is_main:
            self.model.eval()
            with torch.no_grad():
                scores = self.validator(self.bare_model)
            score = scores.get("dice", float("-inf"))
            if score > self.state.best_score:
                self.state.best_score = score
                self.state.best_iteration = self.state.iteration
                self.save("best")
        scores = broadcast_object(self.dist, scores)
        barrier(self.dist)
        return scores

    # --- logging ----------------------------------------------------------------------------
    def _log(self, row: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        self.state.history.append(row)
        self._write_metrics(row)
        board = self._board()
        if board is not None:
            for key, value in row.items():
                if key != "iteration" and isinstance(value, (int, float)):
                    board.add_scalar(key, value, row["iteration"])
        logger.info(
            "iteration %s: %s", row["iteration"], {k: v for k, v in row.items() if k != "iteration"}
        )

    def _write_metrics(self, row: dict[str, Any]) -> None:
        """Append ``row`` to metrics.csv; rewrite the file (atomically, from the history) only when
        a new column appears or on this process's first write (a resumed run drops rows past its
        checkpoint that way)."""
        path = self.run_dir / "metrics.csv"
        new_columns = [key for key in row if key not in self._csv_columns]
        buffer = io.StringIO()
        if new_columns or not self._csv_synced:
            for entry in self.state.history:
                self._csv_columns += [key for key in entry if key not in self._csv_columns]
            writer = csv.DictWriter(buffer, fieldnames=self._csv_columns)
            writer.writeheader()
            writer.writerows(self.state.history)
            atomic_write_text(path, buffer.getvalue())
            self._csv_synced = True
            return
        csv.DictWriter(buffer, fieldnames=self._csv_columns).writerow(row)
        with open(path, "a", encoding="utf-8", newline="") as handle:
            handle.write(buffer.getvalue())

    def _board(self):
        if self._tensorboard is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                self._tensorboard = False
            else:
                self._tensorboard = SummaryWriter(str(self.run_dir / "tensorboard"))
        return self._tensorboard or None

    def _progress_bar(self, start: int, total: int):
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=start, desc="training", unit="it", dynamic_ncols=True)
