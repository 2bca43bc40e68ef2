"""evaluate_case / aggregate: values, units, the empty policy, inputs and errors."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric, compute_hausdorff_distance
from scipy import ndimage

from medseg3d.errors import ConfigError, InvalidVoxelError, ShapeError
from medseg3d.metrics import METRICS, aggregate, dice, evaluate_case, iou, volume_ml

SPACING = (1.0, 1.0, 2.5)


def _cubes():
    gt = np.zeros((20, 20, 24), dtype=np.uint8)
    gt[5:15, 5:15, 5:15] = 1
    pred = np.roll(gt, 3, axis=2)
    return pred, gt


def _one_hot(labels: np.ndarray, classes: int) -> torch.Tensor:
    return (
        torch.nn.functional.one_hot(torch.from_numpy(labels).long(), classes)
        .movedim(-1, 0)[None]
        .float()
    )


def test_two_cubes_offset_by_three_slices():
    pred, gt = _cubes()
    result = evaluate_case(pred, gt, {"cube": 1}, SPACING)["cube"]
    assert result["dice"] == pytest.approx(0.7)  # 700 shared voxels of 1000 + 1000
    assert result["iou"] == pytest.approx(700 / 1300)
    assert result["volume_gt_ml"] == pytest.approx(2.5)  # 1000 voxels of 2.5 mm^3
    assert result["volume_pred_ml"] == pytest.approx(2.5)
    assert result["volume_diff_ml"] == 0.0 and result["volume_rel_diff"] == 0.0
    monai_hd95 = compute_hausdorff_distance(
        _one_hot(pred, 2), _one_hot(gt, 2), percentile=95, spacing=SPACING
    )
    assert result["hd95"] == pytest.approx(float(monai_hd95[0, 0]), abs=1e-5)
    assert dice(pred == 1, gt == 1) == pytest.approx(0.7) and iou(
        pred == 1, gt == 1
    ) == pytest.approx(7 / 13)


def test_matches_monai_dice_and_hd95_on_multi_label_maps():
    rng = np.random.default_rng(0)

    def label_map():
        field = ndimage.gaussian_filter(rng.random((22, 18, 14)), 2)
        return np.digitize(field, np.quantile(field, [0.4, 0.7, 0.9])).astype(np.int16)

    pred, gt = label_map(), label_map()
    spacing = (0.8, 1.1, 3.0)
    result = evaluate_case(pred, gt, {"a": 1, "b": 2, "c": 3}, spacing)
    y_pred, y = _one_hot(pred, 4), _one_hot(gt, 4)
    monai_dice = DiceMetric(include_background=False, reduction="none")(y_pred, y)[0]
    monai_hd95 = compute_hausdorff_distance(y_pred, y, percentile=95, spacing=spacing)[0]
    for index, name in enumerate("abc"):
        assert result[name]["dice"] == pytest.approx(float(monai_dice[index]), abs=1e-6)
        assert result[name]["hd95"] == pytest.approx(float(monai_hd95[index]), abs=1e-4)
        assert result[name]["volume_pred_ml"] == pytest.approx(
            volume_ml(pred == index + 1, spacing)
        )


def test_regions_score_several_values_as_one_structure():
    pred, gt = _cubes()
    gt = gt.copy()
    gt[5:15, 5:15, 10:15] = 2
    result = evaluate_case(pred, gt, {"whole": [1, 2], "core": 2}, SPACING)
    assert result["whole"]["dice"] == pytest.approx(0.7)
    assert result["core"]["dice"] == 0.0 and result["core"]["hd95"] is None
    assert evaluate_case(pred, gt, [1, 2], SPACING)["1"]["voxels_gt"] == 500


def test_empty_policy_and_no_nan_in_the_summary():
    pred, gt = _cubes()
    empty = np.zeros_like(gt)
    labels = {"cube": 1}
    both = evaluate_case(empty, empty, labels, SPACING)["cube"]
    assert (both["dice"], both["iou"], both["hd95"], both["asd"]) == (1.0, 1.0, 0.0, 0.0)
    assert both["volume_rel_diff"] is None
    missed = evaluate_case(empty, gt, labels, SPACING)["cube"]
    assert (missed["dice"], missed["hd95"], missed["asd"], missed["volume_rel_diff"]) == (
        0.0,
        None,
        None,
        -1.0,
    )
    false_alarm = evaluate_case(pred, empty, labels, SPACING)["cube"]
    assert (false_alarm["dice"], false_alarm["hd95"]) == (0.0, None)

    normal = evaluate_case(pred, gt, labels, SPACING)
    summary = aggregate(
        {"a": normal, "b": {"cube": missed}, "c": {"cube": false_alarm}, "d": {"cube": both}}
    )
    hd95 = summary["labels"]["cube"]["hd95"]
    assert hd95["n"] == 2 and hd95["n_excluded"] == 2
    assert hd95["mean"] == pytest.approx(normal["cube"]["hd95"] / 2)
    assert summary["labels"]["cube"]["dice"]["mean"] == pytest.approx((0.7 + 0 + 0 + 1) / 4)
    assert summary["n_cases"] == 4
    json.dumps(summary, allow_nan=False)  # never a NaN / inf


def test_worst_case_distance_options():
    _, gt = _cubes()
    empty = np.zeros_like(gt)
    fixed = evaluate_case(empty, gt, {"cube": 1}, SPACING, empty_distance=373.13)["cube"]
    assert fixed["hd95"] == fixed["asd"] == 373.13
    diagonal = evaluate_case(empty, gt, {"cube": 1}, SPACING, empty_distance="diagonal")["cube"]
    assert diagonal["hd95"] == pytest.approx(np.linalg.norm([20.0, 20.0, 60.0]))
    with pytest.raises(ConfigError, match="empty_distance"):
        evaluate_case(empty, gt, {"cube": 1}, SPACING, empty_distance="worst")


def test_aggregate_statistics():
    cases = [{"x": {"dice": value}} for value in (0.2, 0.4, 0.9)]
    stats = aggregate(cases, metrics=["dice"])["labels"]["x"]["dice"]
    assert stats["mean"] == pytest.approx(0.5)
    assert stats["median"] == pytest.approx(0.4)
    assert stats["std"] == pytest.approx(np.std([0.2, 0.4, 0.9], ddof=1))
    assert (stats["min"], stats["max"], stats["n"], stats["n_excluded"]) == (0.2, 0.9, 3, 0)
    single = aggregate(cases[:1], metrics=["dice"])["labels"]["x"]["dice"]
    assert single["std"] is None
    assert (
        aggregate([{"x": {"dice": float("nan")}}], metrics=["dice"])["labels"]["x"]["dice"][
            "n_excluded"
        ]
        == 1
    )
    assert set(aggregate([evaluate_case(*_cubes(), {"c": 1}, SPACING)])["mean"]) == set(METRICS)


def test_volume_like_inputs_tensors_floats_and_border_labels():
    pred, gt = _cubes()
    affine = np.diag([*SPACING, 1.0])
    volume = lambda a: SimpleNamespace(array=a, spacing=SPACING, affine=affine)  # noqa: E731
    reference = evaluate_case(pred, gt, {"cube": 1}, SPACING)
    assert evaluate_case(volume(pred), volume(gt), {"cube": 1}) == reference
    assert (
        evaluate_case(torch.from_numpy(pred), gt.astype(np.float32), {"cube": 1}, SPACING)
        == reference
    )
    shifted = np.full(pred.shape, -1, dtype=np.int16)  # negative values: no find_objects fast path
    shifted[pred == 1] = 1
    assert evaluate_case(shifted, gt, {"cube": 1}, SPACING) == reference
    moved = affine.copy()
    moved[0, 3] = 5.0  # same spacing, other origin
    other = SimpleNamespace(array=gt, spacing=SPACING, affine=moved)
    with pytest.raises(ShapeError, match="different grids"):
        evaluate_case(volume(pred), other, {"cube": 1})


def test_input_errors():
    pred, gt = _cubes()
    with pytest.raises(ConfigError, match="needs spacing"):
        evaluate_case(pred, gt, {"cube": 1})
    with pytest.raises(ShapeError, match="differ in shape"):
        evaluate_case(pred[:-1], gt, {"cube": 1}, SPACING)
    with pytest.raises(InvalidVoxelError, match="whole numbers"):
        evaluate_case(pred * 0.5, gt, {"cube": 1}, SPACING)
    with pytest.raises(ConfigError, match="labels must be"):
        evaluate_case(pred, gt, {}, SPACING)
    with pytest.raises(ConfigError, match="spacing must be 3"):
        evaluate_case(pred, gt, {"cube": 1}, (1.0, 1.0))
