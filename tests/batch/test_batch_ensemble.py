"""`medseg3d batch` with an ensemble: the masks of `predict`, uncertainty maps, resume."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medseg3d.batch import run_batch
from medseg3d.errors import CheckpointError
from medseg3d.inference.predictor import Predictor
from medseg3d.io import load_volume
from tests.batch.batch_helpers import affine, case_id, make_case_folder, make_model_folder


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    return [
        make_model_folder(root / "a", seed=0),
        make_model_folder(root / "b", seed=1, spacing=(2.0, 2.0, 2.5)),
    ]


def test_batch_with_two_models_gives_the_masks_and_uncertainty_of_predict(tmp_path, pair):
    cases = make_case_folder(tmp_path / "cases", count=2, corrupt=())
    out = tmp_path / "out"
    options = {"uncertainty": "entropy", "weights": [0.6, 0.4]}
    summary = run_batch(cases, out, pair, device="cpu", workers=1, options=options)
    assert summary.counts["done"] == 2 and summary.exit_code == 0

    predictor = Predictor(pair, weights=[0.6, 0.4], device="cpu")
    for index in range(2):
        source = cases / f"group_{'b' if index % 2 else 'a'}" / f"c{index}.nii.gz"
        expected = predictor.predict_case(source, uncertainty="entropy")
        mask = load_volume(out / f"{case_id(index)}.nii.gz")
        np.testing.assert_array_equal(mask.array, expected.labels.array)
        uncertainty = nib.load(str(out / f"{case_id(index)}_uncertainty.nii.gz"))
        assert uncertainty.get_data_dtype() == np.float32
        np.testing.assert_allclose(uncertainty.affine, affine(index), atol=1e-5)
        np.testing.assert_allclose(
            np.asarray(uncertainty.dataobj), expected.uncertainty.array, atol=1e-6
        )
    assert len(list(out.glob("*_uncertainty.nii.gz"))) == 2

    # resume: complete cases are skipped; a case whose uncertainty map is gone is recomputed
    (out / f"{case_id(1)}_uncertainty.nii.gz").unlink()
    again = run_batch(cases, out, pair, device="cpu", workers=1, options=options)
    assert again.counts["skipped"] == 1 and again.counts["done"] == 1
    assert (out / f"{case_id(1)}_uncertainty.nii.gz").is_file()


def test_batch_refuses_models_with_other_labels_before_anything_runs(tmp_path, pair):
    import yaml

    other = make_model_folder(tmp_path / "other", seed=2)
    document = yaml.safe_load((other / "model.yaml").read_text())
    document["labels"] = {"background": 0, "kidney": 1}
    (other / "model.yaml").write_text(yaml.safe_dump(document))
    cases = make_case_folder(tmp_path / "cases", count=1, corrupt=())
    with pytest.raises(CheckpointError, match="kidney"):
        run_batch(cases, tmp_path / "out", [pair[0], other], device="cpu")
    assert not (tmp_path / "out").exists()
