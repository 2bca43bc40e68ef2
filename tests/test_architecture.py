"""Architecture rules that keep the package honest."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "medseg3d"
FACTORY = PACKAGE / "nn" / "layers.py"

DIMENSION_SPECIFIC = re.compile(
    r"\b(Conv|ConvTranspose|LazyConv|LazyConvTranspose|MaxPool|AvgPool|AdaptiveAvgPool|"
    r"AdaptiveMaxPool|BatchNorm|InstanceNorm|LazyBatchNorm|LazyInstanceNorm|Dropout|"
    r"MaxUnpool|LPPool|FractionalMaxPool)[123]d\b"
    r"|\b(conv|conv_transpose|max_pool|avg_pool|adaptive_avg_pool|adaptive_max_pool|"
    r"dropout)[123]d\b"
    r"|\b(bilinear|trilinear|bicubic)\b"
)


def test_layer_factory_is_the_only_place_naming_dimension_specific_layers():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path == FACTORY:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if DIMENSION_SPECIFIC.search(line):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert not offenders, "dimension-specific layers outside the factory:\n" + "\n".join(offenders)


def test_factory_grep_catches_a_dimension_specific_layer():
    assert DIMENSION_SPECIFIC.search("self.conv = nn.Conv3d(1, 2, 3)")
    assert DIMENSION_SPECIFIC.search("F.interpolate(x, mode='trilinear')")
    assert not DIMENSION_SPECIFIC.search("layers.conv(spatial_dims, 1, 2)")


# Imports flow one way, like the data: io -> transforms -> nn -> training / inference -> cli.
FORBIDDEN_IMPORTS = {
    "io": ("medseg3d.nn", "medseg3d.transforms", "medseg3d.training", "medseg3d.inference", "medseg3d.cli"),
    "transforms": ("medseg3d.training", "medseg3d.inference", "medseg3d.cli", "medseg3d.nn.models", "medseg3d.nn.blocks"),
    "nn": ("medseg3d.io", "medseg3d.transforms", "medseg3d.training", "medseg3d.inference", "medseg3d.cli"),
    "losses": ("medseg3d.training", "medseg3d.inference", "medseg3d.cli"),
    "metrics": ("medseg3d.training", "medseg3d.inference", "medseg3d.cli", "medseg3d.nn"),
    "inference": ("medseg3d.training", "medseg3d.cli"),
    "training": ("medseg3d.cli",),
}


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_imports_flow_one_way():
    offenders = []
    for area, forbidden in FORBIDDEN_IMPORTS.items():
        for path in (PACKAGE / area).rglob("*.py"):
            for name in _imports(path):
                if name.startswith(forbidden):
                    offenders.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    for path in PACKAGE.rglob("*.py"):
        if "cli" in path.relative_to(PACKAGE).parts:
            continue
        offenders += [
            f"{path.relative_to(PACKAGE.parent)} imports {name}"
            for name in _imports(path)
            if name.startswith("medseg3d.cli")
        ]
    assert not offenders, "\n".join(offenders)


def test_no_unsafe_loading_or_eval():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), 1):
            stripped = line.split("#")[0]
            if re.search(r"\b(eval|exec)\(", stripped) and ".eval()" not in stripped:
                offenders.append(f"{path.name}:{number}: {line.strip()}")
            if "yaml.load(" in stripped or "pickle.load" in stripped:
                offenders.append(f"{path.name}:{number}: {line.strip()}")
            if "torch.load(" in stripped and "weights_only=True" not in stripped:
                offenders.append(f"{path.name}:{number}: torch.load without weights_only=True")
    assert not offenders, "\n".join(offenders)
