"""``train()``: from a dataset folder to a self-contained model folder.

The steps, each a call into the package below: validate the dataset (every problem at once),
plan preprocessing from its fingerprint, cache the preprocessed arrays, split folds, build the
model, loss, optimizer and schedule from the config registries, run the :class:`Trainer`, and
export ``RUN_DIR/model`` (weights, resolved config, plan, labels, training log) for
``medseg3d predict``.

Run folder::

    RUN_DIR/config.yaml        the resolved config (read back by --resume)
    RUN_DIR/plan.yaml          the preprocessing plan
    RUN_DIR/splits.json        the fold's training and validation cases
    RUN_DIR/cache/             preprocessed arrays (unless data.cache_dir says elsewhere)
    RUN_DIR/checkpoints/       last.pt and best.pt
    RUN_DIR/metrics.csv        loss, learning rate and validation Dice over iterations
    RUN_DIR/model/             the model folder
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from medseg3d.data import (
    PatchDataset,
    Plan,
    build_cache,
    load_dataset,
    plan_dataset,
    validate_dataset,
)
from medseg3d.errors import ConfigError
from medseg3d.inference.device import describe_device, select_device
from medseg3d.inference.model_folder import save_model_folder
from medseg3d.io.atomic import atomic_write_text
from medseg3d.losses import DeepSupervisionLoss, build_loss
from medseg3d.nn import build_model
from medseg3d.training.checkpoint import load_checkpoint
from medseg3d.training.distributed import DistInfo, barrier, init_distributed, shutdown
from medseg3d.training.optim import build_optimizer, build_scheduler
from medseg3d.training.run_folder import check_dataset, resolve_run_config, splits
from medseg3d.training.sampling import AugmentedSamples, make_batches
from medseg3d.training.trainer import Trainer
from medseg3d.training.validation import make_validator
from medseg3d.transforms import build_training_transforms, training_crop_size

logger = logging.getLogger(__name__)


#: Keys that may change when a run is resumed (everything else must match the saved config).
@dataclass
class TrainResult:
    run_dir: Path
    model_dir: Path
    iterations: int
    best_score: float | None
    best_iteration: int | None


def model_spec(config: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """``build_model`` arguments for ``config`` on data planned by ``plan``."""
    section = config["model"]
    options = {
        "features": section["features"],
        "depth": section["depth"],
        "norm": section["norm"],
        "act": section["act"],
        "dropout": section["dropout"],
        "upsample": section["upsample"],
        "deep_supervision": section["deep_supervision"],
        **section["options"],
    }
    return {
        "name": section["name"],
        "spatial_dims": plan.spatial_dims,
        "in_channels": plan.num_channels,
        "out_channels": plan.num_classes,
        "options": options,
    }


def resolve_patch_size(config: dict[str, Any], plan: Plan, divisor: int) -> list[int]:
    patch = config["data"]["patch_size"]
    if patch is None:
        patch = list(plan.patch_size)
    elif isinstance(patch, int):
        patch = [patch] * plan.spatial_dims
    if len(patch) != plan.spatial_dims:
        raise ConfigError(
            f"data.patch_size={patch} needs {plan.spatial_dims} entries for this dataset"
        )
    bad = [p for p in patch if p % divisor]
    if bad:
        raise ConfigError(
            f"data.patch_size={patch} must be a multiple of {divisor} (2**model.depth) on every axis"
        )
    return [int(p) for p in patch]


def train(
    data_dir: str | os.PathLike,
    run_dir: str | os.PathLike,
    config: dict[str, Any],
    *,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> TrainResult:
    """Train on the dataset in ``data_dir``; everything is written under ``run_dir``.

    ``stop_after`` ends this call after that many iterations with ``checkpoints/last.pt``
    written (continue with ``resume=True``); the model folder is exported only when the run
    reaches ``training.iterations``.
    """
    data_dir, run_dir = Path(data_dir), Path(run_dir)
    config = resolve_run_config(run_dir, config, resume)
    device = select_device(config["training"]["device"])
    dist_info = init_distributed(device)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
        torch.cuda.set_device(device)
    try:
        return _train(
            data_dir,
            run_dir,
            config,
            device,
            dist_info,
            resume=resume,
            progress=progress,
            stop_after=stop_after,
        )
    finally:
        shutdown(dist_info)


def _train(
    data_dir, run_dir, config, device, dist_info: DistInfo, *, resume, progress, stop_after
) -> TrainResult:
    data, training = config["data"], config["training"]
    if dist_info.is_main:
        logger.info("training on %s", describe_device(device))
    spec = validate_dataset(load_dataset(data_dir))
    check_dataset(run_dir, spec, resume, write=dist_info.is_main)
    train_ids, val_ids = splits(run_dir, spec, data, resume, write=dist_info.is_main)
    plan = _plan(spec, run_dir, config, resume, dist_info)
    spec_args = model_spec(config, plan)
    torch.manual_seed(training["seed"])
    try:
        model = build_model(
            spec_args["name"],
            spec_args["spatial_dims"],
            spec_args["in_channels"],
            spec_args["out_channels"],
            **spec_args["options"],
        )
    except ConfigError as error:
        raise ConfigError(f"model config (model.*): {error}") from None
    patch_size = resolve_patch_size(config, plan, model.size_divisor)
    # everything that can refuse the config is built before the (long) preprocessing
    try:
        loss = build_loss(config["loss"]["name"], **config["loss"]["options"])
    except ConfigError as error:
        raise ConfigError(f"loss config (loss.*): {error}") from None
    augment = None
    crop_size = patch_size
    if config["augmentation"]["enabled"]:
        options = dict(config["augmentation"]["options"])
        try:
            augment = build_training_transforms(
                plan.spatial_dims, patch_size, sample_patch=False, **options
            )
            crop_size = list(training_crop_size(plan.spatial_dims, patch_size, **options))
        except ConfigError as error:
            raise ConfigError(f"augmentation config (augmentation.options): {error}") from None

    cache_dir = Path(data["cache_dir"]) if data["cache_dir"] else run_dir / "cache"
    if dist_info.is_main:
        build_cache(spec, plan, cache_dir, progress=progress)
    barrier(dist_info)
    if config["validation"]["max_cases"]:
        val_ids = val_ids[: config["validation"]["max_cases"]]
    total, batch_size = training["iterations"], data["batch_size"]
    patches = PatchDataset(
        cache_dir,
        crop_size,
        case_ids=train_ids,
        samples_per_epoch=total * batch_size * dist_info.world_size,
        foreground_fraction=data["foreground_oversampling"],
        seed=training["seed"],
    )
    samples = AugmentedSamples(patches, augment, training["seed"])
    batches = make_batches(
        samples,
        total=total,
        batch_size=batch_size,
        num_workers=data["num_workers"],
        rank=dist_info.rank,
        world_size=dist_info.world_size,
        pin_memory=device.type == "cuda",
    )

    model = model.to(device)
    if spec_args["options"]["deep_supervision"]:
        loss = DeepSupervisionLoss(loss)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    network = model
    if dist_info.enabled:
        network = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    validator = None
    if val_ids:
        validator = make_validator(
            cache_dir,
            val_ids,
            patch_size=patch_size,
            labels=plan.labels,
            device=device,
            overlap=config["validation"]["overlap"],
            batch_size=batch_size,
        )
    term = _term(config, plan, patch_size, device)
    trainer = Trainer(
        model=network,
        loss=loss,
        optimizer=optimizer,
        scheduler=scheduler,
        batches=batches,
        validator=validator,
        config=config,
        run_dir=run_dir,
        device=device,
        dist_info=dist_info,
        progress=progress,
        term=term,
    )
    if resume:
        trainer.resume()
    state = trainer.fit(stop_after=stop_after)

    model_dir = run_dir / "model"
    if dist_info.is_main and state.iteration >= total:
        _export(model_dir, trainer, model, spec_args, plan, patch_size, config, run_dir)
    barrier(dist_info)
    best = state.best_iteration >= 0
    return TrainResult(
        run_dir=run_dir,
        model_dir=model_dir,
        iterations=state.iteration,
        best_score=state.best_score if best else None,
        best_iteration=state.best_iteration if best else None,
    )


def _term(config, plan: Plan, patch_size, device):
    """The optional adversarial term (off by default)."""
    if not config["adversarial"]["enabled"]:
        return None
    from medseg3d.training.adversarial import AdversarialTerm

    return AdversarialTerm.from_config(config, plan, patch_size, device)


def _plan(spec, run_dir: Path, config, resume: bool, dist_info: DistInfo) -> Plan:
    path = run_dir / "plan.yaml"
    if resume and path.is_file():
        return Plan.from_dict(yaml.safe_load(path.read_text()))
    options: dict[str, Any] = {"depth": config["model"]["depth"]}
    if config["data"]["target_spacing"] is not None:
        options["target_spacing"] = config["data"]["target_spacing"]
    try:
        plan = plan_dataset(spec, **options)
    except ValueError as error:  # numpy cannot broadcast a spacing of the wrong length
        if "target_spacing" not in options:
            raise
        raise ConfigError(
            f"data.target_spacing={options['target_spacing']} needs one value per spatial axis "
            f"of the dataset ({error})"
        ) from None
    if dist_info.is_main:
        atomic_write_text(path, yaml.safe_dump(plan.to_dict(), sort_keys=False))
    return plan


def _export(
    model_dir: Path,
    trainer: Trainer,
    model,
    spec_args,
    plan: Plan,
    patch_size,
    config,
    run_dir: Path,
):
    best_path = run_dir / "checkpoints" / "best.pt"
    if config["training"]["export"] == "best" and best_path.is_file():
        model.load_state_dict(load_checkpoint(best_path, map_location="cpu")["model"])
    extra = (
        {"training_log.csv": run_dir / "metrics.csv"}
        if (run_dir / "metrics.csv").is_file()
        else None
    )
    save_model_folder(
        model_dir,
        model=model.cpu().eval(),
        model_spec=spec_args,
        labels=plan.labels,
        plan=plan.to_dict(),
        inference={"patch_size": list(patch_size), "overlap": 0.5},
        config=config,
        extra_files=extra,
    )
    logger.info("model folder written: %s", model_dir)
