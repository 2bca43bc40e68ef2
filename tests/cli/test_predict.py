"""``medseg3d predict`` as a subprocess on real files: geometry, outputs, and clear refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import matplotlib.image
import numpy as np
import pytest
import torch
import yaml
from scipy import ndimage

from medseg3d.cli.main import main
from medseg3d.inference.model_folder import MODEL_FILE, WEIGHTS_FILE, save_model_folder
from medseg3d.io import load_volume, save_volume, write_dicom_series
from medseg3d.io.volume import Volume
from medseg3d.nn import build_model

LABELS = {"background": 0, "liver": 1, "spleen": 2}
OPTIONS = {"features": 4, "depth": 2}


def make_unet_folder(folder, *, head_bias=None, seed=0):
    """An untrained 3-class U-Net model folder (no training needed; any output is valid)."""
    torch.manual_seed(seed)
    model = build_model("unet", 3, 1, 3, **OPTIONS)
    if head_bias is not None:
        with torch.no_grad():
            model.decoder.heads[0].bias.copy_(torch.tensor(head_bias))
    plan = {
        "spatial_dims": 3,
        "target_spacing": [1.5, 1.5, 1.5],
        "normalization": [{"scheme": "ct", "clip": [-200.0, 300.0], "mean": 40.0, "std": 80.0}],
        "patch_size": [16, 16, 16],
        "labels": LABELS,
        "num_channels": 1,
        "channel_names": ["CT"],
    }
    return save_model_folder(
        folder,
        model=model,
        model_spec={
            "name": "unet",
            "spatial_dims": 3,
            "in_channels": 1,
            "out_channels": 3,
            "options": OPTIONS,
        },
        labels=LABELS,
        plan=plan,
        inference={"patch_size": [16, 16, 16], "overlap": 0.5},
        config={"model": {"name": "unet", **OPTIONS}},
    )


def oblique_affine(spacing=(0.7, 0.9, 2.5)):
    angle = 0.4
    rotation = np.array(
        [[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-1, 1, 1]) @ np.diag(spacing)  # oblique, LAS-like
    affine[:3, 3] = [-20.0, 15.0, -60.0]
    return affine


def ct_like(shape=(30, 26, 12), seed=0):
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    body = (x**2 + y**2 < 0.8).astype(np.float32)
    image = -1000 + body * 1040 + body * 120 * ((x - 0.3) ** 2 + y**2 + z**2 < 0.2)
    return (image + rng.normal(0, 30, shape)).astype(np.float32)


@pytest.fixture
def medseg(capsys):
    """The same command line in this process (cheaper than a subprocess; the subprocess tests
    cover the process boundary), returning what ``subprocess.run`` would."""

    def run(*args):
        code = main([str(arg) for arg in args])
        captured = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=captured.out, stderr=captured.err)

    return run


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_unet_folder(tmp_path_factory.mktemp("model") / "unet")


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    return save_volume(
        Volume(ct_like(), oblique_affine()), tmp_path_factory.mktemp("scan") / "abdomen_007.nii.gz"
    )


def test_oblique_nifti_into_a_folder_with_every_output(cli, tmp_path, model_dir, scan):
    out = tmp_path / "out"
    out.mkdir()
    result = cli(
        "predict",
        "-i",
        scan,
        "-o",
        out,
        "-m",
        model_dir,
        "--device",
        "cpu",
        "--probabilities",
        "--preview",
        tmp_path / "preview.png",
        "--json",
        tmp_path / "report.json",
    )
    assert result.returncode == 0, result.stderr
    mask = load_volume(out / "abdomen_007_seg.nii.gz")
    reference = load_volume(scan)
    assert mask.spatial_shape == reference.spatial_shape
    np.testing.assert_allclose(mask.affine, reference.affine, atol=1e-5)
    assert set(np.unique(mask.array)) <= {0, 1, 2}
    probabilities = load_volume(out / "abdomen_007_seg_probabilities.nii.gz")
    assert probabilities.array.shape == (*reference.spatial_shape, 3)
    np.testing.assert_allclose(probabilities.affine, reference.affine, atol=1e-5)
    np.testing.assert_array_equal(np.argmax(probabilities.array, axis=-1), mask.array)
    picture = matplotlib.image.imread(tmp_path / "preview.png")
    assert picture.shape[:2] == (480, 1200)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["device"].startswith("cpu")
    assert set(report["labels"]) == {"liver", "spleen"}
    voxel_ml = np.prod(reference.spacing) / 1000
    assert report["labels"]["liver"]["volume_ml"] == pytest.approx(
        (mask.array == 1).sum() * voxel_ml
    )
    assert report["seconds"]["total"] > 0 and report["settings"]["overlap"] == 0.5
    assert "mL" in result.stdout and "liver" in result.stdout and "cpu" in result.stdout


def test_dicom_series_in_nifti_and_dicom_seg_out(cli, medseg, tmp_path):
    pydicom = pytest.importorskip("pydicom")
    model = make_unet_folder(tmp_path / "m", head_bias=[0.0, 50.0, 0.0])  # liver everywhere
    series = tmp_path / "series"
    write_dicom_series(Volume(ct_like((24, 20, 8)), oblique_affine((0.8, 0.8, 3.0))), series)
    reference = load_volume(series)
    result = cli(
        "predict", "-i", series, "-o", tmp_path / "seg.nii.gz", "-m", model, "--device", "cpu"
    )
    assert result.returncode == 0, result.stderr
    mask = load_volume(tmp_path / "seg.nii.gz")
    assert mask.spatial_shape == reference.spatial_shape
    np.testing.assert_allclose(mask.affine, reference.affine, atol=1e-5)
    assert (mask.array == 1).all()
    result = medseg(
        "predict", "-i", series, "-o", tmp_path / "out", "-m", model, "--format", "dicom-seg"
    )
    assert result.returncode == 0, result.stderr
    seg = pydicom.dcmread(tmp_path / "out" / "series_seg.dcm")
    assert seg.Modality == "SEG" and seg.SegmentSequence[0].SegmentLabel == "liver"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == reference.meta["series_uid"]


def test_largest_component_and_tta_change_the_output(medseg, tmp_path, model_dir, scan):
    runs = {}
    for name, flags in {"plain": [], "largest": ["--largest-component"], "tta": ["--tta"]}.items():
        output = tmp_path / f"{name}.nii.gz"
        result = medseg(
            "predict", "-i", scan, "-o", output, "-m", model_dir, "--patch-size", "16", *flags
        )
        assert result.returncode == 0, result.stderr
        runs[name] = load_volume(output).array
    structure = ndimage.generate_binary_structure(3, 3)
    for value in (1, 2):
        components = ndimage.label(runs["largest"] == value, structure)[1]
        assert components <= 1
        assert ((runs["largest"] == value) <= (runs["plain"] == value)).all()  # only removes
    assert ndimage.label(runs["plain"] > 0, structure)[1] > 1  # there was something to remove
    assert not np.array_equal(
        runs["tta"], runs["plain"]
    )  # an untrained net is not mirror-symmetric


def test_tampered_and_foreign_checkpoints_are_refused(cli, medseg, tmp_path, scan):
    model = make_unet_folder(tmp_path / "m")
    state = torch.load(model / WEIGHTS_FILE, weights_only=True)
    state["decoder.heads.0.bias"] += 1
    torch.save(state, model / WEIGHTS_FILE)
    result = medseg("predict", "-i", scan, "-o", tmp_path / "x.nii.gz", "-m", model)
    assert result.returncode != 0
    assert "modified or replaced" in result.stderr and WEIGHTS_FILE in result.stderr
    # another architecture's weights (a consistent sha256): the message says what does not fit
    other = make_unet_folder(tmp_path / "other")
    document = yaml.safe_load((other / MODEL_FILE).read_text())
    document["model"]["options"] = {"features": 8, "depth": 2}
    (other / MODEL_FILE).write_text(yaml.safe_dump(document))
    result = medseg("predict", "-i", scan, "-o", tmp_path / "x.nii.gz", "-m", other)
    assert result.returncode != 0
    assert "shape mismatches" in result.stderr and "another model" in result.stderr
    # a pickle that would run code: forged together with a matching sha256
    marker = tmp_path / "executed"
    payload = (
        b"\x80\x02cbuiltins\nopen\nq\x00X"
        + len(str(marker)).to_bytes(4, "little")
        + str(marker).encode()
        + b"X\x01\x00\x00\x00wq\x01\x86q\x02Rq\x03."
    )
    (model / WEIGHTS_FILE).write_bytes(payload)
    import hashlib

    document = yaml.safe_load((model / MODEL_FILE).read_text())
    document["weights_sha256"] = hashlib.sha256(payload).hexdigest()
    (model / MODEL_FILE).write_text(yaml.safe_dump(document))
    result = cli("predict", "-i", scan, "-o", tmp_path / "x.nii.gz", "-m", model)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "not a plain state dict" in result.stderr
    assert not marker.exists()
    assert not (tmp_path / "x.nii.gz").exists()


def test_clear_errors_without_tracebacks(cli, medseg, tmp_path, model_dir, scan):
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b not really a gzip file")
    cases = {
        "missing model": (
            ["-i", scan, "-o", tmp_path / "a.nii.gz", "-m", tmp_path / "no_model"],
            "does not exist",
        ),
        "unreadable input": (
            ["-i", broken, "-o", tmp_path / "b.nii.gz", "-m", model_dir],
            "broken.nii.gz",
        ),
        "missing input": (
            ["-i", tmp_path / "none.nii.gz", "-o", tmp_path / "c.nii.gz", "-m", model_dir],
            "none.nii.gz",
        ),
        "output is input": (["-i", scan, "-o", scan, "-m", model_dir], "overwrite"),
        "bad device": (
            ["-i", scan, "-o", tmp_path / "d.nii.gz", "-m", model_dir, "--device", "gpu7"],
            "--device",
        ),
    }
    for name, (arguments, expected) in cases.items():
        run = cli if name == "missing model" else medseg  # one through a real process
        result = run("predict", *arguments)
        assert result.returncode != 0, name
        assert "Traceback" not in result.stderr, name
        assert expected in result.stderr, (name, result.stderr)
        errors = [
            line for line in result.stderr.splitlines() if line.startswith("medseg3d: error:")
        ]
        assert len(errors) == 1 and expected in errors[0], (name, result.stderr)
    assert load_volume(scan).array.shape == ct_like().shape  # the input is untouched


def test_an_ensemble_with_weights_writes_the_mask_and_an_uncertainty_map(
    cli, medseg, tmp_path, model_dir, scan
):
    from medseg3d.inference.predictor import Predictor

    other = make_unet_folder(tmp_path / "fold_1", seed=1)
    out = tmp_path / "out"
    out.mkdir()
    common = ["--device", "cpu", "--save-uncertainty", "--no-progress"]
    result = medseg(  # in this process; the refusal below goes through a real one
        "predict", "-i", scan, "-o", out, "-m", model_dir, "-m", other,
        "--model-weights", "0.7", "0.3", "--json", tmp_path / "r.json", *common,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = Predictor([model_dir, other], weights=[0.7, 0.3], device="cpu").predict_case(
        str(scan), uncertainty="entropy"
    )
    mask = load_volume(out / "abdomen_007_seg.nii.gz")
    np.testing.assert_array_equal(mask.array, expected.labels.array)
    uncertainty = load_volume(out / "abdomen_007_uncertainty.nii.gz")
    assert uncertainty.array.dtype == np.float32
    np.testing.assert_allclose(uncertainty.affine, load_volume(scan).affine, atol=1e-5)
    np.testing.assert_allclose(uncertainty.array, expected.uncertainty.array, atol=1e-6)
    assert 0.0 <= uncertainty.array.min() and uncertainty.array.max() <= 1.0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["model"] == [str(model_dir), str(other)]
    assert [m["weight"] for m in report["settings"]["models"]] == [0.7, 0.3]
    assert "weight 0.7" in result.stdout and "weight 0.3" in result.stdout

    # models that disagree on labels: one line naming both folders, no traceback
    foreign = make_unet_folder(tmp_path / "foreign", seed=2)
    document = yaml.safe_load((foreign / MODEL_FILE).read_text())
    document["labels"] = {"background": 0, "liver": 1, "kidney": 2}
    (foreign / MODEL_FILE).write_text(yaml.safe_dump(document))
    refused = cli(
        "predict", "-i", scan, "-o", tmp_path / "x.nii.gz", "-m", model_dir, "-m", foreign,
        *common,
    )  # fmt: skip
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("medseg3d: error:")]
    assert len(errors) == 1, refused.stderr
    assert "kidney" in errors[0] and "spleen" in errors[0]
    assert str(model_dir) in errors[0] and str(foreign) in errors[0]
    assert not (tmp_path / "x.nii.gz").exists()


def test_output_naming_rules(tmp_path):
    from medseg3d.cli.predict import _output_path, case_name
    from medseg3d.errors import ConfigError

    assert case_name(tmp_path / "liver_007.nii.gz") == "liver_007"
    assert case_name(tmp_path / "scan.MHA") == "scan"
    (tmp_path / "CT_0001").mkdir()
    assert case_name(tmp_path / "CT_0001") == "CT_0001"

    def output_path(raw, requested="auto"):
        return _output_path(str(raw), "c", requested)

    assert output_path(tmp_path / "seg.nii.gz") == ("nifti", tmp_path / "seg.nii.gz")
    assert output_path(tmp_path / "seg.nrrd") == ("nrrd", tmp_path / "seg.nrrd")
    assert output_path(tmp_path / "results") == ("nifti", tmp_path / "results" / "c_seg.nii.gz")
    assert output_path(tmp_path, "dicom-seg") == ("dicom-seg", tmp_path / "c_seg.dcm")
    # a trailing slash means a folder, even when the name has a dot
    assert output_path(f"{tmp_path}/run_2024.01/") == (
        "nifti",
        tmp_path / "run_2024.01" / "c_seg.nii.gz",
    )
    assert output_path(f"{tmp_path}/masks.nii/")[1] == tmp_path / "masks.nii" / "c_seg.nii.gz"
    for unknown in ("seg.png", "seg.mhd"):  # .mhd (header + raw pair) is read, not written
        with pytest.raises(ConfigError, match="unknown extension"):
            output_path(tmp_path / unknown)
    with pytest.raises(ConfigError, match="does not match"):
        output_path(tmp_path / "seg.nii.gz", "dicom-seg")


def test_an_unwritable_output_is_refused_before_the_model_runs(medseg, tmp_path, model_dir, scan):
    (tmp_path / "afile").write_text("x")
    result = medseg("predict", "-i", scan, "-o", tmp_path / "afile" / "m.nii.gz", "-m", model_dir)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "afile is a file, not a folder" in result.stderr
    assert "loaded" not in result.stderr  # refused before loading the model
    result = medseg(
        "predict",
        "-i",
        scan,
        "-o",
        tmp_path / "m.nii.gz",
        "-m",
        model_dir,
        "--json",
        tmp_path / "afile" / "r.json",
    )
    assert result.returncode == 1 and not (tmp_path / "m.nii.gz").exists()


def test_uncertainty_map_naming(tmp_path):
    from medseg3d.batch.engine import uncertainty_path
    from medseg3d.cli.predict import uncertainty_sibling

    assert uncertainty_sibling(tmp_path / "c_seg.nii.gz") == tmp_path / "c_uncertainty.nii.gz"
    assert uncertainty_sibling(tmp_path / "mask.mha") == tmp_path / "mask_uncertainty.nii.gz"
    assert uncertainty_path(tmp_path / "p01_ct.nii.gz") == tmp_path / "p01_ct_uncertainty.nii.gz"


def test_predict_never_imports_monai_so_it_starts_in_seconds(tmp_path, model_dir, scan):
    """MONAI (and ignite with it) costs about 2.5 s of start-up and 150 MB; predict needs neither."""
    script = (
        "import sys; from medseg3d.cli.main import main; "
        f"code = main(['predict', '-i', {str(scan)!r}, '-o', {str(tmp_path / 'm.nii.gz')!r}, "
        f"'-m', {str(model_dir)!r}, '--device', 'cpu', '--tta', '--json', "
        f"{str(tmp_path / 'r.json')!r}]); "
        "print('exit', code, 'monai' in sys.modules, 'ignite' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "exit 0 False False"
    assert load_volume(tmp_path / "m.nii.gz").spatial_shape == load_volume(scan).spatial_shape


def test_a_scan_whose_qform_differs_from_its_sform_gets_a_mask_every_reader_overlays(
    medseg, tmp_path, model_dir
):
    import nibabel as nib
    import SimpleITK as sitk

    qform = oblique_affine()
    sform = qform.copy()
    sform[:3, 3] += [12.0, -8.0, 20.0]  # e.g. FSL/ANTs: sform aligned, qform scanner
    image = nib.Nifti1Image(ct_like(), sform)
    image.set_sform(sform, code=2)
    image.set_qform(qform, code=1)
    nib.save(image, tmp_path / "scan.nii.gz")
    result = medseg(
        "predict",
        "-i",
        tmp_path / "scan.nii.gz",
        "-o",
        tmp_path / "m.nii.gz",
        "-m",
        model_dir,
        "--device",
        "cpu",
    )
    assert result.returncode == 0, result.stderr
    scan, mask = nib.load(tmp_path / "scan.nii.gz"), nib.load(tmp_path / "m.nii.gz")
    for get in ("get_sform", "get_qform"):  # nibabel reads the sform, ITK the qform
        np.testing.assert_allclose(getattr(mask, get)(), getattr(scan, get)(), atol=1e-5)
    assert mask.header.get_sform(coded=True)[1] == 2 and mask.header.get_qform(coded=True)[1] == 1
    itk_scan, itk_mask = (
        sitk.ReadImage(tmp_path / "scan.nii.gz"),
        sitk.ReadImage(tmp_path / "m.nii.gz"),
    )
    np.testing.assert_allclose(itk_mask.GetOrigin(), itk_scan.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(itk_mask.GetDirection(), itk_scan.GetDirection(), atol=1e-6)


def test_allow_irregular_segments_a_series_with_a_missing_slice(medseg, tmp_path, model_dir):
    paths = write_dicom_series(Volume(ct_like(), oblique_affine()), tmp_path / "series")
    paths[5].unlink()
    out = tmp_path / "m.nii.gz"
    refused = medseg("predict", "-i", tmp_path / "series", "-o", out, "-m", model_dir)
    assert refused.returncode == 1 and "--allow-irregular" in refused.stderr
    result = medseg(
        "predict", "-i", tmp_path / "series", "-o", out, "-m", model_dir, "--allow-irregular"
    )
    assert result.returncode == 0, result.stderr
    regular = load_volume(tmp_path / "series", allow_irregular=True)
    mask = load_volume(out)
    assert mask.spatial_shape == regular.spatial_shape
    np.testing.assert_allclose(mask.affine, regular.affine, atol=1e-5)


def test_a_preview_must_be_a_png(medseg, tmp_path, model_dir, scan):
    result = medseg(
        "predict",
        "-i",
        scan,
        "-o",
        tmp_path / "m.nii.gz",
        "-m",
        model_dir,
        "--preview",
        tmp_path / "p.jpg",
    )
    assert result.returncode == 1 and "name it .png" in result.stderr
