"""Post-processing and the preview picture, checked on hand-made label maps."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest

from medseg3d.errors import ConfigError, ShapeError
from medseg3d.inference.postprocess import (
    fill_holes,
    keep_largest_component,
    label_volumes,
    postprocess,
)
from medseg3d.inference.preview import save_preview, structure_centre, to_ras
from medseg3d.io.volume import Volume


def _two_blobs() -> np.ndarray:
    labels = np.zeros((20, 20, 20), dtype=np.uint8)
    labels[2:8, 2:8, 2:8] = 1  # 216 voxels
    labels[12:14, 12:14, 12:14] = 1  # 8 voxels, a separate island
    labels[10:18, 2:6, 2:6] = 2  # 128 voxels
    labels[5, 15, 15] = 2  # one stray voxel
    return labels


def test_largest_component_keeps_the_biggest_island_per_class():
    labels = _two_blobs()
    result = keep_largest_component(labels)
    assert (result == 1).sum() == 216 and (result == 2).sum() == 128
    assert result[13, 13, 13] == 0 and result[5, 15, 15] == 0
    assert result.dtype == labels.dtype and (labels == _two_blobs()).all()  # input untouched


def test_largest_component_only_for_chosen_values():
    result = keep_largest_component(_two_blobs(), [2])
    assert (result == 1).sum() == 216 + 8 and (result == 2).sum() == 128


def test_connectivity_decides_whether_diagonal_voxels_touch():
    labels = np.zeros((6, 6, 6), dtype=np.uint8)
    labels[1:3, 1:3, 1:3] = 1
    labels[3, 3, 3] = 1  # touches the cube at one corner only
    assert (keep_largest_component(labels) == 1).sum() == 9  # 26-connected: one component
    assert (keep_largest_component(labels, connectivity=1) == 1).sum() == 8
    with pytest.raises(ConfigError):
        keep_largest_component(labels, connectivity=4)


def test_fill_holes_fills_cavities_but_keeps_enclosed_structures():
    labels = np.zeros((12, 12, 12), dtype=np.int16)
    labels[2:10, 2:10, 2:10] = 1
    labels[4:6, 4:6, 4:6] = 0  # a cavity: filled with 1
    labels[6:8, 6:8, 6:8] = 2  # a tumour inside the organ: kept
    result = fill_holes(labels)
    assert (result[4:6, 4:6, 4:6] == 1).all()
    assert (result[6:8, 6:8, 6:8] == 2).all()
    assert (result == 0).sum() == 12**3 - 8**3


def test_fill_holes_leaves_open_regions_alone():
    labels = np.zeros((10, 10, 10), dtype=np.uint8)
    labels[2:8, 2:8, 2:8] = 1
    labels[4:6, 4:6, 0:8] = 0  # a tunnel open to the outside: not a hole
    assert (fill_holes(labels) == labels).all()


def test_postprocess_runs_both_steps_and_is_a_no_op_by_default():
    labels = _two_blobs()
    assert postprocess(labels) is labels
    result = postprocess(labels, largest_component=True, fill_holes=True)
    assert (result == keep_largest_component(labels)).all()


def test_label_volumes_in_millilitres():
    labels = _two_blobs()
    volumes = label_volumes(
        labels, (0.5, 2.0, 3.0), {"background": 0, "liver": 1, "spleen": 2, "kidney": 3}
    )
    assert set(volumes) == {"liver", "spleen", "kidney"}
    assert volumes["liver"]["voxels"] == 224
    assert volumes["liver"]["volume_ml"] == pytest.approx(224 * 3.0 / 1000)
    assert volumes["spleen"]["volume_ml"] == pytest.approx(129 * 3.0 / 1000)
    assert volumes["kidney"] == {"value": 3, "voxels": 0, "volume_ml": 0.0}


# --- preview --------------------------------------------------------------------------------
def test_to_ras_reorders_axes_without_interpolation():
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    # array axes point Left, Superior, Anterior (LSA)
    affine = np.array([[-2.0, 0, 0, 10], [0, 0, 3, -5], [0, 1.5, 0, 7], [0, 0, 0, 1]])
    ras, ras_affine = to_ras(array, affine)
    assert ras.shape == (2, 4, 3)
    np.testing.assert_allclose(np.diag(ras_affine)[:3], [2.0, 3.0, 1.5])
    # the same world point holds the same value before and after
    for index in [(0, 0, 0), (1, 2, 3), (1, 0, 2)]:
        world = affine @ [*index, 1]
        ras_index = np.round(np.linalg.solve(ras_affine, world)[:3]).astype(int)
        assert ras[tuple(ras_index)] == array[index]


def test_structure_centre_lies_inside_the_largest_structure():
    labels = _two_blobs()
    centre = structure_centre(labels)
    assert labels[centre] == 1
    ring = np.zeros((21, 21, 3), dtype=np.uint8)
    ring[3:18, 3:18, 1] = 1
    ring[6:15, 6:15, 1] = 0  # the centre of mass is in the hole
    assert ring[structure_centre(ring)] == 1
    assert structure_centre(np.zeros((4, 6, 8), dtype=np.uint8)) == (2, 3, 4)


def test_preview_is_a_png_of_the_requested_size(tmp_path):
    affine = np.array([[0.0, -1.2, 0, 10], [0.9, 0, 0, -4], [0, 0, 2.5, 3], [0, 0, 0, 1]])
    rng = np.random.default_rng(0)
    image = Volume(rng.normal(size=(20, 20, 20)).astype(np.float32), affine)
    labels = image.with_array(_two_blobs())
    path = save_preview(
        image, labels, tmp_path / "preview.png", names={"liver": 1, "spleen": 2}, size=(600, 240)
    )
    picture = matplotlib.image.imread(path)
    assert picture.shape[:2] == (240, 600)
    assert picture[..., :3].std() > 0.05  # not blank
    assert not list(tmp_path.glob(".medseg3d-tmp-*"))


def test_preview_refuses_mismatched_grids(tmp_path):
    image = Volume(np.zeros((8, 8, 8), np.float32), np.eye(4))
    labels = Volume(np.zeros((8, 8, 4), np.uint8), np.eye(4))
    with pytest.raises(ShapeError):
        save_preview(image, labels, tmp_path / "p.png")


def test_preview_uses_radiological_orientation(tmp_path):
    # an LPS-stored volume (as read from DICOM) whose structure sits right, anterior, superior
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    image = Volume(np.zeros((30, 30, 30), np.float32), affine)
    labels = np.zeros((30, 30, 30), dtype=np.uint8)
    labels[0:8, 0:8, 22:30] = 1  # low L index = right; low P index = anterior; high z = superior
    path = save_preview(image, image.with_array(labels), tmp_path / "p.png", size=(900, 300))
    picture = matplotlib.image.imread(path)[:, :, :3]
    coloured = np.argwhere(picture.max(axis=2) - picture.min(axis=2) > 0.2)  # not grey
    panels = {0: "axial", 1: "coronal", 2: "sagittal"}
    for index, name in panels.items():
        points = coloured[
            (coloured[:, 1] >= index * 300 + 10) & (coloured[:, 1] < (index + 1) * 300 - 10)
        ]
        assert len(points), name
        row, column = points.mean(axis=0)
        column -= index * 300
        if name == "axial":  # patient right -> picture left, anterior -> top
            assert column < 150 and row < 150, name
        elif name == "coronal":  # patient right -> picture left, superior -> top
            assert column < 150 and row < 150, name
        else:  # anterior -> picture left, superior -> top
            assert column < 150 and row < 150, name
