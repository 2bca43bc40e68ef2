"""Write DICOM: a scalar volume as a classic series (pydicom), a mask as DICOM SEG (highdicom).

``write_dicom_series`` turns any Volume with an orthogonal affine (oblique is fine) into one
file per slice with exact ImagePositionPatient / ImageOrientationPatient / PixelSpacing: sample
data, test fixtures, or results for a PACS that takes images. ``write_dicom_seg`` stores a label
map computed on a DICOM series as a DICOM Segmentation that references that series' instances.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import numpy as np

from medseg3d.errors import DicomError, OutputError
from medseg3d.io.atomic import atomic_path
from medseg3d.io.checks import check_finite, check_label_values, check_single_channel
from medseg3d.io.geometry import is_sheared, ras_to_lps
from medseg3d.io.volume import Volume

SOP_CLASSES = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "MR": "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
    "PT": "1.2.840.10008.5.1.4.1.1.128",  # PET Image Storage
}
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def _encode(array: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Values -> int16 stored values with (slope, intercept) so that value = stored*slope + intercept."""
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    integral = np.issubdtype(array.dtype, np.integer) or bool(np.all(array == np.round(array)))
    if integral and low >= -32768 and high <= 32767:
        return array.astype(np.int16), 1.0, 0.0
    slope = (high - low) / 65534.0 or 1.0
    intercept = low + 32767.0 * slope
    stored = np.clip(np.round((array - intercept) / slope), -32767, 32767).astype(np.int16)
    return stored, float(f"{slope:.10g}"), float(f"{intercept:.10g}")


def _ds(value: float) -> str:
    """A Decimal String (at most 16 characters)."""
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.6e}"


def write_dicom_series(
    volume: Volume,
    folder: str | os.PathLike,
    *,
    modality: str = "CT",
    series_description: str = "medseg3d",
    series_number: int = 1,
    series_uid: str | None = None,
    study_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    patient_id: str = "medseg3d",
    patient_name: str = "Anonymous^",
) -> list[Path]:
    """Write a scalar 3D volume ``(X, Y, Z)`` as a DICOM series, one file per slice.

    Array axis X runs along the DICOM rows (column index), Y down the columns (row index), Z
    across slices; positions and orientations come from the affine (RAS -> LPS). Values are
    stored as int16 with RescaleSlope/Intercept (exact for whole numbers in int16 range).
    Files are written atomically as ``folder/slice_0000.dcm`` …; returns their paths.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    check_single_channel(volume, what="write_dicom_series")
    if volume.spatial_dims != 3:
        raise DicomError("write_dicom_series needs one scalar 3D volume (X, Y, Z)", path=folder)
    if is_sheared(volume.affine):
        raise DicomError("cannot write a sheared affine as a classic DICOM series", path=folder)
    check_finite(volume)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lps = ras_to_lps(volume.affine)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    row_dir, col_dir = lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]
    stored, slope, intercept = _encode(np.asarray(volume.array))
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = frame_of_reference_uid or generate_uid()
    sop_class = SOP_CLASSES.get(modality.upper(), SECONDARY_CAPTURE)
    now = datetime.datetime.now()
    normal = np.cross(row_dir, col_dir)
    paths = []
    for k in range(volume.spatial_shape[2]):
        position = lps[:3, 3] + k * lps[:3, 2]
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = (
            patient_name,
            patient_id,
            "",
            "O",
        )
        ds.StudyInstanceUID, ds.StudyID, ds.AccessionNumber = study_uid, "1", ""
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
        ds.ReferringPhysicianName = ""
        ds.SeriesInstanceUID, ds.SeriesNumber = series_uid, int(series_number)
        ds.SeriesDescription, ds.Modality = series_description, modality.upper()
        ds.Manufacturer = "medseg3d"
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_uid, ""
        ds.InstanceNumber = k + 1
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.ImageOrientationPatient = [_ds(v) for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]  # (between rows, between columns)
        ds.SliceThickness = _ds(spacing[2])
        ds.SpacingBetweenSlices = _ds(spacing[2])
        ds.SliceLocation = _ds(float(np.dot(position, normal)))
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = volume.spatial_shape[1], volume.spatial_shape[0]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = _ds(slope), _ds(intercept)
        ds.RescaleType = "HU" if modality.upper() == "CT" else "US"
        if modality.upper() == "CT":
            ds.KVP = ""
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()  # (rows, columns)
        path = folder / f"slice_{k:04d}.dcm"
        with atomic_path(path) as temporary:
            ds.save_as(temporary, enforce_file_format=True)
        paths.append(path)
    return paths


def write_dicom_seg(
    mask: Volume | np.ndarray,
    reference: Volume,
    path: str | os.PathLike,
    *,
    labels: dict[int, str] | None = None,
    series_description: str = "medseg3d segmentation",
    algorithm_version: str = "0.1.0",
) -> Path:
    """Write a label map ``(X, Y, Z)`` on ``reference``'s grid as a DICOM SEG (highdicom).

    ``reference`` must come from :func:`load_volume` on a classic DICOM series or on one
    enhanced multi-frame file (it carries ``meta['dicom_files']`` and ``meta['frame_numbers']``,
    sorted by slice). ``labels`` maps label value -> segment name (default ``{v: f"label {v}"}``
    for every non-zero value present); every named label gets a segment, so an empty mask (no
    finding) is still written, as a SEG whose segments are empty.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    files = reference.meta.get("dicom_files")
    if reference.meta.get("format") == "dicom" and reference.meta.get("regularized"):
        raise OutputError(
            f"the series was resampled onto a regular grid ({reference.meta['regularized']}), so "
            "its slices match no source image and a DICOM SEG cannot reference them; save NIfTI",
            path=path,
        )
    if not files or reference.meta.get("format") != "dicom":
        raise OutputError("DICOM SEG needs a reference volume read from a DICOM series", path=path)
    array = np.asarray(mask.array if isinstance(mask, Volume) else mask)
    if array.shape != reference.spatial_shape:
        raise OutputError(
            f"mask shape {array.shape} != reference grid {reference.spatial_shape}", path=path
        )
    present = [int(v) for v in check_label_values(array, path=str(path)) if v > 0]
    labels = labels or {value: f"label {value}" for value in present}
    if not labels:
        raise OutputError(
            "the mask is empty and no label names were given: a DICOM SEG needs at least one "
            "segment to describe; pass labels={value: name}",
            path=path,
        )
    numbers = {value: number for number, value in enumerate(sorted(labels), start=1)}
    stacked = np.transpose(array, (2, 1, 0))  # (slices, rows, columns)
    segments = np.zeros(stacked.shape, dtype=np.uint16 if len(numbers) > 255 else np.uint8)
    for value, number in numbers.items():
        segments[stacked == value] = number
    sources, frames = _seg_sources(files, reference.meta.get("frame_numbers"), segments, path)
    algorithm = hd.AlgorithmIdentificationSequence(
        name="medseg3d", version=algorithm_version, family=codes.cid7162.ArtificialIntelligence
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=str(labels[value])[:64],
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for value, number in numbers.items()
    ]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=int(reference.meta.get("series_number") or 0) + 1000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medseg3d",
        manufacturer_model_name="medseg3d",
        software_versions=algorithm_version,
        device_serial_number="0",
        series_description=series_description,
    )
    path = Path(path)
    with atomic_path(path) as temporary:
        seg.save_as(temporary)
    return path


def _seg_sources(
    files: list[str], frame_numbers, segments: np.ndarray, path
) -> tuple[list, np.ndarray]:
    """The source datasets and the SEG frames, one per source frame in the sources' order.

    A classic series: one file per slice, sorted like the volume. An enhanced multi-frame file:
    one source whose frame ``frame_numbers[k]`` is slice ``k`` of the volume; its other frames
    (other time points of a multi-phase file) stay empty.
    """
    import pydicom

    if len(set(files)) == len(files):
        return [pydicom.dcmread(f) for f in files], segments
    if len(set(files)) > 1 or not frame_numbers:
        raise OutputError(
            "DICOM SEG from a series of several multi-frame files is not supported; save NIfTI",
            path=path,
        )
    source = pydicom.dcmread(files[0])
    frames = np.zeros((int(source.NumberOfFrames), *segments.shape[1:]), dtype=segments.dtype)
    for k, number in enumerate(frame_numbers):
        frames[int(number) - 1] = segments[k]
    return [source], frames
