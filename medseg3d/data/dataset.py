"""Dataset folders: the Medical Segmentation Decathlon layout and nnU-Net v2's raw layout.

MSD::

    dataset.json   {"labels": {"0": "background", "1": "liver"}, "modality": {"0": "CT"},
                    "training": [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}],
                    "test": ["./imagesTs/y.nii.gz"]}
    imagesTr/x.nii.gz  (3D, or 4D with channels last)     labelsTr/x.nii.gz

nnU-Net v2::

    dataset.json   {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1},
                    "numTraining": 1, "file_ending": ".nii.gz"}
    imagesTr/CASE_0000.nii.gz (one file per channel)      labelsTr/CASE.nii.gz

:func:`load_dataset` parses either into a :class:`DatasetSpec` without raising for problems it
can describe (they are kept in ``spec.problems``); :func:`validate_dataset` then checks every
file and raises one :class:`~medseg3d.errors.DatasetError` listing every problem found.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from medseg3d.data.dataset_json import parse_channels, parse_labels
from medseg3d.errors import DatasetError

#: Endings of the image files a dataset folder may hold (``file_ending`` chooses one).
IMAGE_ENDINGS = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")


@dataclass(frozen=True)
class Case:
    """One case: its image file(s), one per channel (an MSD 4D file is one entry), and label."""

    case_id: str
    images: list[Path]
    label: Path | None = None


@dataclass
class DatasetSpec:
    """A parsed dataset folder.

    Attributes:
        root: the folder holding ``dataset.json``.
        cases: training cases (with labels).
        labels: ``{name: value}``, background included (``{"background": 0, "liver": 1}``).
        channel_names: one name per input channel (``["CT"]``, ``["T2", "ADC"]``).
        modalities: the same, upper-cased, as used to choose normalisation (``"CT"`` -> CT
            normalisation; anything else -> z-score).
        layout: ``"msd"`` or ``"nnunet"``.
        test_cases: ``imagesTs/`` cases (labels from ``labelsTs/`` when present).
        problems: what parsing found wrong (reported by :func:`validate_dataset`).
    """

    root: Path
    cases: list[Case]
    labels: dict[str, int]
    channel_names: list[str]
    modalities: list[str]
    layout: str
    name: str = ""
    file_ending: str = ".nii.gz"
    test_cases: list[Case] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def num_classes(self) -> int:
        """Output channels a network needs: the largest label value + 1."""
        return max(self.labels.values(), default=0) + 1

    @property
    def case_ids(self) -> list[str]:
        return [case.case_id for case in self.cases]

    def case(self, case_id: str) -> Case:
        for case in self.cases:
            if case.case_id == case_id:
                return case
        raise KeyError(case_id)


def load_dataset(folder: str | os.PathLike) -> DatasetSpec:
    """Parse ``folder/dataset.json`` (MSD or nnU-Net v2 layout) into a :class:`DatasetSpec`.

    Raises :class:`~medseg3d.errors.DatasetError` only when there is nothing to parse (no folder,
    no or unreadable ``dataset.json``); other problems are collected in ``spec.problems``.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(
            "dataset folder not found; pass a folder holding dataset.json", path=root
        )
    json_path = root / "dataset.json"
    if not json_path.is_file():
        raise DatasetError(
            "no dataset.json; write one in the MSD or nnU-Net v2 form (see docs/datasets.md)",
            path=root,
        )
    try:
        info = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(
            f"dataset.json is not valid JSON ({error}); fix the file", path=root
        ) from error
    if not isinstance(info, dict):
        raise DatasetError("dataset.json must hold a JSON object", path=root)

    problems: list[str] = []
    labels = parse_labels(info, problems)
    channel_names = parse_channels(info, problems)
    file_ending = str(info.get("file_ending", ".nii.gz"))
    if "training" in info:
        layout = "msd"
        cases = _msd_cases(root, info, problems)
        test_cases = _msd_test_cases(root, info, file_ending)
    else:
        layout = "nnunet"
        if "file_ending" not in info:
            problems.append(
                "dataset.json has neither 'training' (MSD) nor 'file_ending' (nnU-Net v2): add one"
            )
        cases = _nnunet_cases(root, info, file_ending, len(channel_names), problems)
        test_cases = _folder_cases(root, "imagesTs", "labelsTs", file_ending, len(channel_names))
    ids = [case.case_id for case in cases]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        problems.append(f"duplicate case ids {duplicates} - give every case a unique file name")
    if not cases:
        problems.append("no training cases found")
    return DatasetSpec(
        root=root,
        cases=cases,
        labels=labels,
        channel_names=channel_names,
        modalities=[c.upper() for c in channel_names],
        layout=layout,
        name=str(info.get("name", root.name)),
        file_ending=file_ending,
        test_cases=test_cases,
        problems=problems,
    )


def validate_dataset(
    spec: DatasetSpec | str | os.PathLike, check_content: bool = True
) -> DatasetSpec:
    """Check a dataset and raise one :class:`~medseg3d.errors.DatasetError` listing every problem.

    Always: ``dataset.json`` keys (label values 0..N-1, no ignore label, ``numTraining``),
    every image and label file exists, channels are complete and none is extra.
    With ``check_content`` every file is read: unreadable files, image/label shape and geometry
    (affine, 1e-4 mm) mismatches, channels on different grids, label values not declared in
    ``labels``, non-integer labels, NaN/Inf in images. Returns the spec when all is well.
    """
    from medseg3d.data.checks import check_case_content

    if not isinstance(spec, DatasetSpec):
        spec = load_dataset(spec)
    problems = list(spec.problems)
    for case in spec.cases:
        missing = [p for p in [*case.images, case.label] if p is not None and not p.is_file()]
        problems += [f"{case.case_id}: missing file {_relative(p, spec.root)}" for p in missing]
        if case.label is None:
            problems.append(
                f"{case.case_id}: no label - add labelsTr/{case.case_id}{spec.file_ending}"
            )
        if check_content and not missing:
            problems += [
                f"{case.case_id}: {problem}"
                for problem in check_case_content(case, spec.labels, spec.num_channels, spec.root)
            ]
    if problems:
        raise DatasetError(problems, path=spec.root)
    return spec


# --- parsing ---------------------------------------------------------------------------------
def _case_id(path: str, file_ending: str) -> str:
    name = Path(path).name
    for ending in (file_ending, *IMAGE_ENDINGS):
        if name.endswith(ending):
            return name[: -len(ending)]
    return Path(name).stem


def _resolve(root: Path, path: str) -> Path:
    return (root / path).resolve() if not Path(path).is_absolute() else Path(path)


def _msd_cases(root: Path, info: dict, problems: list[str]) -> list[Case]:
    entries = info.get("training")
    if not isinstance(entries, list):
        problems.append('dataset.json: \'training\' must be a list of {"image": …, "label": …}')
        return []
    cases = []
    for number, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
            problems.append(f"dataset.json: training[{number}] has no 'image' path")
            continue
        label = entry.get("label")
        case_id = _case_id(entry["image"], str(info.get("file_ending", ".nii.gz")))
        cases.append(
            Case(
                case_id,
                [_resolve(root, entry["image"])],
                _resolve(root, label) if isinstance(label, str) else None,
            )
        )
    expected = info.get("numTraining")
    if _is_count(expected) and expected != len(entries):
        problems.append(
            f"dataset.json: numTraining is {expected} but 'training' lists {len(entries)} cases"
        )
    return cases


def _msd_test_cases(root: Path, info: dict, file_ending: str) -> list[Case]:
    tests = info.get("test")
    if not isinstance(tests, list):
        return []
    cases = []
    for entry in tests:
        image = entry.get("image") if isinstance(entry, dict) else entry
        if not isinstance(image, str):
            continue
        case_id = _case_id(image, file_ending)
        label = root / "labelsTs" / Path(image).name
        cases.append(
            Case(case_id, [_resolve(root, image)], label.resolve() if label.is_file() else None)
        )
    return cases


def _nnunet_cases(
    root: Path, info: dict, file_ending: str, num_channels: int, problems: list[str]
) -> list[Case]:
    explicit = info.get("dataset")
    if isinstance(explicit, dict):  # nnU-Net v2's explicit file list
        return [
            Case(
                str(case_id),
                [_resolve(root, p) for p in entry.get("images", [])],
                _resolve(root, entry["label"]) if entry.get("label") else None,
            )
            for case_id, entry in sorted(explicit.items())
        ]
    if not (root / "imagesTr").is_dir():
        problems.append("imagesTr/ is missing")
        return []
    cases = _folder_cases(root, "imagesTr", "labelsTr", file_ending, num_channels, problems)
    problems += _other_ending_problems(root / "imagesTr", file_ending)
    with_images = {case.case_id for case in cases}
    labels_dir = root / "labelsTr"
    if labels_dir.is_dir():
        for label in sorted(labels_dir.glob(f"*{file_ending}")):
            case_id = label.name[: -len(file_ending)]
            if case_id not in with_images and not label.name.startswith("."):
                problems.append(
                    f"{case_id}: label {_relative(label, root)} has no image - add imagesTr/{case_id}_0000{file_ending}"
                )
    expected = info.get("numTraining")
    if _is_count(expected) and expected != len(cases):
        problems.append(
            f"dataset.json: numTraining is {expected} but imagesTr/ holds {len(cases)} cases "
            f"(files ending in {file_ending!r})"
        )
    return cases


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _other_ending_problems(folder: Path, file_ending: str) -> list[str]:
    """Image files in ``folder`` whose ending is not ``file_ending`` (never read), by ending."""
    counts: dict[str, int] = {}
    for path in folder.iterdir():
        if path.name.startswith(".") or path.name.endswith(file_ending) or not path.is_file():
            continue
        ending = next((e for e in IMAGE_ENDINGS if path.name.endswith(e)), None)
        if ending is not None:
            counts[ending] = counts.get(ending, 0) + 1
    return [
        f"{folder.name}/ holds {count} files ending in {ending!r} but dataset.json's file_ending "
        f'is {file_ending!r}, so they are not read - set "file_ending": "{ending}" or convert them'
        for ending, count in sorted(counts.items())
    ]


def _folder_cases(
    root: Path,
    images_dir: str,
    labels_dir: str,
    file_ending: str,
    num_channels: int,
    problems: list[str] | None = None,
) -> list[Case]:
    """nnU-Net file naming: ``CASE_0000<ending>``… per channel, the label ``CASE<ending>``.

    A channel file past the declared channels (``CASE_0002`` with 2 channels) is reported in
    ``problems`` when given.
    """
    folder = root / images_dir
    if not folder.is_dir():
        return []
    ids = set()
    for path in sorted(folder.glob(f"*{file_ending}")):
        stem = path.name[: -len(file_ending)]
        if len(stem) > 5 and stem[-5] == "_" and stem[-4:].isdigit() and not stem.startswith("."):
            ids.add(stem[:-5])
            if problems is not None and int(stem[-4:]) >= num_channels:
                problems.append(
                    f"{stem[:-5]}: {images_dir}/{path.name} is channel {int(stem[-4:])} but "
                    f"dataset.json declares {num_channels} channel(s) - remove the file or add "
                    "the channel to 'channel_names'"
                )
    cases = []
    for case_id in sorted(ids):
        images = [folder / f"{case_id}_{c:04d}{file_ending}" for c in range(num_channels)]
        label = root / labels_dir / f"{case_id}{file_ending}"
        is_training = images_dir == "imagesTr"
        cases.append(Case(case_id, images, label if (is_training or label.is_file()) else None))
    return cases


def _relative(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
