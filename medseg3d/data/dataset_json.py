"""The ``labels`` and ``channel_names``/``modality`` keys of ``dataset.json`` and their rules.

Each parser returns what it could read and appends a sentence to ``problems`` for what is wrong
(reported together by :func:`medseg3d.data.dataset.validate_dataset`). Label values must be
0 (background), 1, …, N-1 with no gaps, nnU-Net's rule: the network has one output per value.
Ignore labels (nnU-Net's label named ``ignore``, or a negative value) are not supported yet.
"""

from __future__ import annotations


def parse_labels(info: dict, problems: list[str]) -> dict[str, int]:
    """``{name: value}`` sorted by value, from the MSD (``{"0": "background"}``) or nnU-Net
    (``{"background": 0}``) form of ``info["labels"]``."""
    raw = info.get("labels")
    if not isinstance(raw, dict) or not raw:
        problems.append(
            'dataset.json: missing or empty \'labels\' (e.g. {"background": 0, "liver": 1})'
        )
        return {"background": 0}
    labels: dict[str, int] = {}
    for key, value in raw.items():
        if str(key).strip().lstrip("-").isdigit():  # MSD: {"0": "background"}
            labels[str(value)] = int(key)
        elif isinstance(value, int) and not isinstance(value, bool):  # nnU-Net: {"background": 0}
            labels[str(key)] = value
        else:
            problems.append(
                f"dataset.json: label {key!r}: {value!r} is not a label value "
                "(region-based labels are not supported) - use one integer per label"
            )
    labels = dict(sorted(labels.items(), key=lambda kv: kv[1]))
    values = list(labels.values())
    if len(set(values)) != len(values):
        problems.append(
            f"dataset.json: label values {sorted(values)} repeat - give every label its own value"
        )
    if 0 not in values:
        problems.append("dataset.json: 'labels' must declare the background as 0")
    problems += _ignore_label_problems(labels)
    problems += _gap_problems(labels)
    return labels


def _is_ignore(name: str, value: int) -> bool:
    return name.strip().lower() == "ignore" or value < 0


def _ignore_label_problems(labels: dict[str, int]) -> list[str]:
    ignored = [f"{name!r}: {value}" for name, value in labels.items() if _is_ignore(name, value)]
    if not ignored:
        return []
    return [
        f"dataset.json: ignore labels are not supported yet: {', '.join(ignored)} "
        "(a label named 'ignore' or a negative value) - remove it from 'labels' and relabel "
        "its voxels with a declared class or 0 (background)"
    ]


def _gap_problems(labels: dict[str, int]) -> list[str]:
    """Values (ignore labels left out, reported on their own) that are not 0, 1, …, N-1."""
    values = sorted({v for name, v in labels.items() if not _is_ignore(name, v)})
    if 0 not in values or values == list(range(len(values))):
        return []  # a missing background is reported on its own
    mapping = ", ".join(f"{old} -> {new}" for new, old in enumerate(values) if old != new)
    return [
        f"dataset.json: label values {values} are not consecutive: the network would get "
        f"{values[-1] + 1} outputs, {values[-1] + 1 - len(values)} of them for values no label "
        f"declares - relabel to 0..{len(values) - 1} in dataset.json and in every label file "
        f"({mapping}); nnU-Net has the same rule"
    ]


def parse_channels(info: dict, problems: list[str]) -> list[str]:
    """One name per input channel, from ``channel_names`` (nnU-Net) or ``modality`` (MSD)."""
    raw = info.get("channel_names", info.get("modality"))
    if not isinstance(raw, dict) or not raw:
        problems.append(
            "dataset.json: missing 'channel_names' (nnU-Net) or 'modality' (MSD), e.g. {\"0\": \"CT\"}"
        )
        return ["unknown"]
    try:
        keys = sorted(raw, key=int)
    except ValueError:
        problems.append(f'dataset.json: channel keys {list(raw)} must be "0", "1", …')
        return [str(v) for v in raw.values()]
    if [int(k) for k in keys] != list(range(len(keys))):
        problems.append(f'dataset.json: channel keys {keys} must be consecutive from "0"')
    return [str(raw[k]) for k in keys]
