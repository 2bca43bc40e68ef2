"""The training configuration: one declarative schema, defaults, YAML files and ``--set`` overrides.

A config is a nested dict ``{section: {key: value}}``. Every key is declared once in
:data:`SCHEMA` with its default, type, allowed values and meaning; the schema validates configs
(refusing unknown keys and bad values before training starts, naming the key and what is
allowed) and generates the reference table in the documentation (:func:`describe`), so the docs
never drift from the code. Files are read with ``yaml.safe_load``; values name components from
registries (``model.name: unet``), never import paths.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from medseg3d.errors import ConfigError, FileNotFoundMedsegError, UnreadableFileError

Check = Callable[[Any], str | None]  # returns a problem description, or None when fine


@dataclass(frozen=True)
class Option:
    key: str  # "section.name"
    default: Any
    types: tuple[type, ...]
    help: str
    choices: tuple[Any, ...] | None = None
    check: Check | None = None
    nullable: bool = False
    #: values YAML 1.1 produces for what the user typed: ``amp: off`` is read as False
    aliases: tuple[tuple[Any, Any], ...] = ()


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be > 0"


def _non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be >= 0"


def _probability(value: Any) -> str | None:
    return None if 0 <= value <= 1 else "must be between 0 and 1"


def _size(value: Any) -> str | None:
    values = value if isinstance(value, list) else [value]
    if not values or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
    ):
        return "must be a positive integer or a list of 2 or 3 positive integers"
    if isinstance(value, list) and len(value) not in (2, 3):
        return "must have 2 or 3 entries (one per spatial axis)"
    return None


def _spacing(value: Any) -> str | None:
    if len(value) not in (2, 3) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value
    ):
        return "must be a list of 2 or 3 positive numbers (mm, one per spatial axis)"
    return None


def _device(value: Any) -> str | None:
    if value in ("auto", "cpu", "cuda") or (isinstance(value, str) and value.startswith("cuda:")):
        return None
    return "must be auto, cpu, cuda or cuda:N"


_NUMBER = (int, float)
_LAYER = (str, list)  # a name or [name, {options}]

# fmt: off
SCHEMA: tuple[Option, ...] = (
    # --- model ---------------------------------------------------------------------------------
    Option("model.name", "unet", (str,), "architecture from the model registry (`medseg3d models`)"),
    Option("model.features", 32, (int,), "channels at the first level, doubled per level", check=_positive),
    Option("model.depth", 4, (int,), "number of down-samplings", check=_positive),
    Option("model.norm", "instance", _LAYER, "normalisation: batch, instance, group, none", nullable=True),
    Option("model.act", "leaky_relu", _LAYER, "activation: relu, leaky_relu, prelu, gelu or [name, {options}]"),
    Option("model.dropout", 0.0, _NUMBER, "dropout probability in the blocks", check=_probability),
    Option("model.upsample", "transpose", (str,), "decoder up-sampling", choices=("transpose", "interp")),
    Option("model.deep_supervision", True, (bool,), "auxiliary heads on decoder levels during training"),
    Option("model.options", {}, (dict,), "further architecture-specific options passed to build_model"),
    # --- data ----------------------------------------------------------------------------------
    Option("data.fold", 0, (int,), "cross-validation fold used for validation", check=_non_negative),
    Option("data.num_folds", 5, (int,), "number of cross-validation folds (1: train on all, no validation)", check=_positive),
    Option("data.patch_size", None, (int, list), "training patch in voxels (default: from the plan)", check=_size, nullable=True),
    Option("data.batch_size", 2, (int,), "patches per iteration (per process with DDP)", check=_positive),
    Option("data.foreground_oversampling", 0.33, _NUMBER, "share of patches centred on a foreground voxel", check=_probability),
    Option("data.num_workers", 2, (int,), "data-loading worker processes (0: in the main process)", check=_non_negative),
    Option("data.target_spacing", None, (list,), "resampling spacing in mm (default: from the plan)", check=_spacing, nullable=True),
    Option("data.cache_dir", None, (str,), "where preprocessed arrays are cached (default: RUN_DIR/cache)", nullable=True),
    # --- augmentation --------------------------------------------------------------------------
    Option("augmentation.enabled", True, (bool,), "use the training augmentation pipeline"),
    Option("augmentation.options", {}, (dict,), "options of medseg3d.transforms.build_training_transforms"),
    # --- loss ----------------------------------------------------------------------------------
    Option("loss.name", "dice_ce", (str,), "loss from the loss registry (dice, ce, focal, dice_ce, dice_focal, …)"),
    Option("loss.options", {}, (dict,), "loss options (include_background, batch, lambda_dice, …)"),
    # --- optimizer and schedule ----------------------------------------------------------------
    Option("optimizer.name", "adamw", (str,), "optimizer", choices=("adamw", "sgd")),
    Option("optimizer.lr", 1e-3, _NUMBER, "peak learning rate", check=_positive),
    Option("optimizer.weight_decay", 3e-5, _NUMBER, "weight decay", check=_non_negative),
    Option("optimizer.momentum", 0.99, _NUMBER, "SGD momentum (Nesterov)", check=_probability),
    Option("scheduler.name", "poly", (str,), "learning-rate schedule", choices=("poly", "cosine", "constant")),
    Option("scheduler.warmup_iterations", 0, (int,), "linear warm-up iterations", check=_non_negative),
    Option("scheduler.poly_exponent", 0.9, _NUMBER, "exponent of the poly schedule", check=_positive),
    # --- training loop -------------------------------------------------------------------------
    Option("training.iterations", 1000, (int,), "optimizer steps in total", check=_positive),
    Option("training.seed", 0, (int,), "seed of every random choice (patches, augmentation, init)"),
    Option("training.device", "auto", (str,), "auto, cpu, cuda or cuda:N", check=_device),
    Option("training.amp", "auto", (str,), "mixed precision on CUDA", choices=("auto", "bf16", "fp16", "off"), aliases=((False, "off"),)),
    Option("training.grad_clip", 12.0, _NUMBER, "gradient-norm clipping (0: off)", check=_non_negative),
    Option("training.checkpoint_every", 50, (int,), "iterations between `last` checkpoints", check=_positive),
    Option("training.validate_every", 100, (int,), "iterations between validations", check=_positive),
    Option("training.log_every", 10, (int,), "iterations between metric rows in metrics.csv", check=_positive),
    Option("training.export", "best", (str,), "weights in the model folder", choices=("best", "last")),
    # --- validation ----------------------------------------------------------------------------
    Option("validation.overlap", 0.5, _NUMBER, "sliding-window overlap during validation", check=_probability),
    Option("validation.max_cases", 0, (int,), "validate on at most this many cases (0: all)", check=_non_negative),
    # --- adversarial term (SegAN / Luc et al.) -------------------------------------------------
    Option("adversarial.enabled", False, (bool,), "add an adversarial loss from a mask discriminator"),
    Option("adversarial.weight", 0.01, _NUMBER, "weight of the adversarial term in the generator loss", check=_non_negative),
    Option("adversarial.lr", 1e-4, _NUMBER, "discriminator learning rate", check=_positive),
    Option("adversarial.features", 16, (int,), "discriminator width at its first level", check=_positive),
    Option("adversarial.start_iteration", 0, (int,), "iterations of plain training before the term is on", check=_non_negative),
)
# fmt: on

OPTIONS: dict[str, Option] = {option.key: option for option in SCHEMA}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(option.key.split(".")[0] for option in SCHEMA))


def default_config() -> dict[str, dict[str, Any]]:
    """A fresh nested dict holding every default."""
    config: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for option in SCHEMA:
        section, name = option.key.split(".")
        config[section][name] = copy.deepcopy(option.default)
    return config


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config (``yaml.safe_load``); it may set any subset of the keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundMedsegError("config file not found", path=path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise UnreadableFileError(
            f"not valid YAML ({str(error).splitlines()[0]})", path=path
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("a config file must hold a mapping of sections", path=path)
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``"optimizer.lr=3e-4"`` -> ``("optimizer.lr", 0.0003)`` (values parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set expects section.key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), _yaml_number(value, raw)


def _yaml_number(value: Any, raw: str) -> Any:
    # YAML 1.1 reads "3e-4" as a string; users mean a float.
    if isinstance(value, str):
        try:
            return float(raw)
        except ValueError:
            return value
    return value


def merge(
    config: dict[str, Any], updates: dict[str, Any], *, source: str = "config"
) -> dict[str, Any]:
    """Return ``config`` updated by a nested ``updates`` mapping (unknown keys refused)."""
    result = copy.deepcopy(config)
    for section, values in updates.items():
        if section not in SECTIONS:
            raise ConfigError(
                f"{source}: unknown section {section!r}; sections: {', '.join(SECTIONS)}"
            )
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section {section!r} must be a mapping of keys")
        for name, value in values.items():
            set_value(result, f"{section}.{name}", value, source=source)
    return result


def set_value(config: dict[str, Any], key: str, value: Any, *, source: str = "config") -> None:
    """Set ``section.key`` (refusing unknown keys, with the closest names as a hint).

    ``section.options.name`` sets one entry of an options mapping and keeps the others.
    """
    parts = key.split(".")
    if (
        len(parts) == 3
        and ".".join(parts[:2]) in OPTIONS
        and OPTIONS[".".join(parts[:2])].types == (dict,)
    ):
        section, name, entry = parts
        current = config.setdefault(section, {}).get(name)
        mapping = dict(current) if isinstance(current, dict) else {}
        mapping[entry] = copy.deepcopy(value)
        config[section][name] = mapping
        return
    if key not in OPTIONS:
        section = key.split(".")[0]
        known = [k for k in OPTIONS if k.startswith(section + ".")] or list(OPTIONS)
        raise ConfigError(f"{source}: unknown key {key!r}; known keys: {', '.join(known)}")
    section, name = key.split(".")
    for typed, meant in OPTIONS[key].aliases:
        if value is typed or (type(value) is type(typed) and value == typed):
            value = meant
    config.setdefault(section, {})[name] = copy.deepcopy(value)


def build_config(
    files: Sequence[str | os.PathLike] = (),
    overrides: Iterable[str] = (),
    values: dict[str, Any] | None = None,
    *,
    base: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Defaults (or ``base``, e.g. a saved run's config), then YAML files in order, then
    ``values`` (``{"model.name": ...}``, None meaning "not given"), then ``--set`` overrides."""
    config = merge(default_config(), base, source="saved config") if base else default_config()
    for path in files:
        config = merge(config, load_config_file(path), source=str(path))
    for key, value in (values or {}).items():
        if value is not None:
            set_value(config, key, value, source="command line")
    for text in overrides:
        key, value = parse_override(text)
        set_value(config, key, value, source="--set")
    validate_config(config)
    return config


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Check every key's type, range and allowed values; raise one ConfigError listing all problems."""
    problems = []
    for section, values in config.items():
        if section not in SECTIONS:
            problems.append(f"unknown section {section!r}")
            continue
        for name in values:
            if f"{section}.{name}" not in OPTIONS:
                problems.append(f"unknown key {section}.{name}")
    for option in SCHEMA:
        section, name = option.key.split(".")
        value = config.get(section, {}).get(name, option.default)
        problem = _check(option, value)
        if problem:
            problems.append(f"{option.key}={value!r} {problem}")
    problems += _check_registries(config)
    problems += _check_across(config)
    if problems:
        raise ConfigError("invalid config: " + "; ".join(problems))
    return config


def _check(option: Option, value: Any) -> str | None:
    if value is None:
        return None if option.nullable else "must be set"
    if isinstance(value, bool) and bool not in option.types:
        return f"must be {_type_names(option.types)}"
    if not isinstance(value, option.types):
        return f"must be {_type_names(option.types)}"
    if option.choices is not None and value not in option.choices:
        return f"is not allowed; choose one of: {', '.join(map(str, option.choices))}"
    return option.check(value) if option.check else None


def _check_registries(config: dict[str, Any]) -> list[str]:
    """Names that must exist in a registry (checked lazily so this module stays light)."""
    problems = []
    from medseg3d.losses import LOSSES
    from medseg3d.nn import MODELS

    model_name = config.get("model", {}).get("name")
    if isinstance(model_name, str) and model_name not in MODELS:
        problems.append(
            f"model.name={model_name!r} is not allowed; choose one of: {', '.join(MODELS.names())}"
        )
    loss_name = config.get("loss", {}).get("name")
    if isinstance(loss_name, str) and loss_name not in LOSSES:
        problems.append(
            f"loss.name={loss_name!r} is not allowed; choose one of: {', '.join(LOSSES.names())}"
        )
    return problems


def _check_across(config: dict[str, Any]) -> list[str]:
    """Checks that involve several keys, or a component's own option names."""
    problems = []
    data = config.get("data", {})
    fold, folds = data.get("fold", 0), data.get("num_folds", 5)
    if isinstance(fold, int) and isinstance(folds, int) and folds > 1 and fold >= folds:
        problems.append(
            f"data.fold={fold} (--fold) must be below data.num_folds={folds}: folds are 0..{folds - 1}"
        )
    options = config.get("augmentation", {}).get("options")
    if isinstance(options, dict) and options:
        import inspect

        from medseg3d.transforms.pipeline import build_training_transforms

        known = set(inspect.signature(build_training_transforms).parameters) - {
            "spatial_dims",
            "patch_size",
            "sample_patch",  # the trainer samples patches itself
        }
        unknown = sorted(set(options) - known)
        if unknown:
            problems.append(
                f"augmentation.options has unknown option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
    return problems


def _type_names(types: tuple[type, ...]) -> str:
    names = {
        bool: "true/false",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }
    return " or ".join(dict.fromkeys(names.get(t, t.__name__) for t in types))


def save_config(config: dict[str, Any], path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically."""
    from medseg3d.io.atomic import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config, sort_keys=False))


def describe() -> str:
    """The reference table of every key (Markdown), generated from :data:`SCHEMA`."""
    lines = []
    for section in SECTIONS:
        lines += [
            f"### `{section}`",
            "",
            "| key | default | allowed | meaning |",
            "|---|---|---|---|",
        ]
        for option in SCHEMA:
            if option.key.split(".")[0] != section:
                continue
            allowed = (
                ", ".join(map(str, option.choices)) if option.choices else _type_names(option.types)
            )
            default = (
                yaml.safe_dump(option.default, default_flow_style=True)
                .strip()
                .removesuffix("...")
                .strip()
            )
            lines.append(f"| `{option.key}` | `{default}` | {allowed} | {option.help} |")
        lines.append("")
    return "\n".join(lines)
