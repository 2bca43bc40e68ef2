"""DICOM files -> frames: pixels plus the geometry and rescale of each 2D frame.

A classic series gives one frame per file; an enhanced (multi-frame) file gives one frame per
entry of its Per-Frame Functional Groups (position, orientation, pixel measures, rescale); a
legacy multi-frame file (RT dose, NM) uses ImagePositionPatient + GridFrameOffsetVector.
Pixels are decoded by pydicom and, for transfer syntaxes its installed plugins cannot decode
(e.g. 12-bit JPEG), by SimpleITK's GDCM.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg3d.errors import DicomError, UnreadableFileError

logger = logging.getLogger(__name__)


@dataclass
class Frame:
    """One 2D image with its geometry (LPS, mm) and the linear rescale to real values."""

    pixels: np.ndarray  # (rows, columns[, samples]) stored values
    position: np.ndarray | None  # ImagePositionPatient of the top-left pixel centre
    orientation: np.ndarray | None  # ImageOrientationPatient (row dir, column dir)
    pixel_spacing: tuple[float, float]  # (between rows, between columns)
    slope: float
    intercept: float
    thickness: float | None
    order_key: tuple  # ordering of frames that share a position (time, echo, instance…)
    file: Path
    sop_uid: str
    frame_number: int  # 1-based within its file


def _float_list(value) -> list[float] | None:
    if value is None or value == "":
        return None
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        return None


def _number(value, default: float | None = None) -> float | None:
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _group_item(dataset, index: int, sequence: str):
    """An item of a functional group for frame ``index``: per-frame first, then shared."""
    for groups_name, position in (
        ("PerFrameFunctionalGroupsSequence", index),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        groups = dataset.get(groups_name)
        if groups is None or len(groups) <= position:
            continue
        inner = groups[position].get(sequence)
        if inner is not None and len(inner):
            return inner[0]
    return None


def decode_pixels(dataset, path: Path) -> np.ndarray:
    """All frames of a file as ``(frames, rows, columns[, samples])`` stored values."""
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    # a failed decoder plugin logs an ERROR with a traceback (from pydicom.pixels.* loggers,
    # which take their level from "pydicom"); we fall back to GDCM or report it in one line
    pydicom_logger = logging.getLogger("pydicom")
    previous = pydicom_logger.level
    pydicom_logger.setLevel(logging.CRITICAL + 1)
    try:
        pixels = dataset.pixel_array
    except Exception as error:  # noqa: BLE001 - fall back to GDCM, then report
        return _decode_with_sitk(path, error, dataset)  # already (frames, rows, columns[, s])
    finally:
        pydicom_logger.setLevel(previous)
    return pixels[None] if frames == 1 else pixels


def _decode_with_sitk(path: Path, first_error: Exception, dataset) -> np.ndarray:
    import SimpleITK as sitk

    warnings = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # GDCM's own complaints on stderr
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError:
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax) or "unknown transfer syntax"
        reason = str(first_error).strip().splitlines()[0]
        if getattr(syntax, "is_compressed", False):
            fix = "if the file is intact, install pylibjpeg with its libjpeg/openjpeg plugins"
        else:
            fix = "the file is truncated or corrupt; copy it again from the source"
        raise UnreadableFileError(
            f"cannot decode DICOM pixel data ({name}): {reason}; {fix}", path=path
        ) from first_error
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings)
    logger.debug("%s: pixels decoded with SimpleITK/GDCM (pydicom: %s)", path, first_error)
    array = sitk.GetArrayFromImage(image)  # (frames, rows, columns[, samples])
    rescale = (
        _number(dataset.get("RescaleSlope"), 1.0) != 1.0
        or _number(dataset.get("RescaleIntercept"), 0.0) != 0.0
    )
    if rescale:  # GDCM applied the modality rescale already: undo it so it is applied once
        array = (array - _number(dataset.get("RescaleIntercept"), 0.0)) / _number(
            dataset.get("RescaleSlope"), 1.0
        )
    return array


def frames_from_file(path: Path) -> list[Frame]:
    """Read one DICOM file (classic, enhanced multi-frame or legacy multi-frame) as frames."""
    import pydicom

    try:
        dataset = pydicom.dcmread(path, force=True)
    except Exception as error:  # noqa: BLE001
        raise UnreadableFileError(f"cannot read DICOM file ({error})", path=path) from error
    if "PixelData" not in dataset and "FloatPixelData" not in dataset:
        raise DicomError("DICOM file has no pixel data", path=path)
    try:
        pixels = decode_pixels(dataset, path)
    except UnreadableFileError:
        raise
    except Exception as error:  # noqa: BLE001
        raise UnreadableFileError(f"cannot decode DICOM pixel data ({error})", path=path) from error
    count = pixels.shape[0]
    sop_uid = str(dataset.get("SOPInstanceUID", ""))
    instance = int(_number(dataset.get("InstanceNumber"), 0) or 0)
    if "PerFrameFunctionalGroupsSequence" in dataset or "SharedFunctionalGroupsSequence" in dataset:
        return [
            _enhanced_frame(dataset, index, pixels[index], path, sop_uid) for index in range(count)
        ]
    position = _float_list(dataset.get("ImagePositionPatient"))
    orientation = _float_list(dataset.get("ImageOrientationPatient"))
    spacing = _float_list(dataset.get("PixelSpacing")) or _float_list(
        dataset.get("ImagerPixelSpacing")
    )
    thickness = _number(dataset.get("SpacingBetweenSlices")) or _number(
        dataset.get("SliceThickness")
    )
    offsets = _float_list(dataset.get("GridFrameOffsetVector"))
    common = {
        "orientation": None if orientation is None else np.asarray(orientation),
        "pixel_spacing": tuple(spacing[:2]) if spacing else (1.0, 1.0),
        "slope": _number(dataset.get("RescaleSlope"), 1.0) or 1.0,
        "intercept": _number(dataset.get("RescaleIntercept"), 0.0) or 0.0,
        "file": path,
        "sop_uid": sop_uid,
    }
    key = _order_key(dataset, instance)
    if count == 1:
        return [
            Frame(
                pixels[0],
                None if position is None else np.asarray(position),
                thickness=thickness,
                order_key=key,
                frame_number=1,
                **common,
            )
        ]
    if position is None or orientation is None or offsets is None or len(offsets) != count:
        raise DicomError(
            f"multi-frame file with {count} frames but no per-frame geometry "
            "(no functional groups, no GridFrameOffsetVector): cannot place its frames in space",
            path=path,
        )
    from medseg3d.io.geometry import slice_normal

    normal = slice_normal(orientation)
    frames = []
    for index in range(count):
        frame_position = np.asarray(position) + offsets[index] * normal
        frames.append(
            Frame(
                pixels[index],
                frame_position,
                thickness=None,
                order_key=(*key, index),
                frame_number=index + 1,
                **common,
            )
        )
    return frames


def _as_tuple(value) -> tuple:
    if value is None or value == "":
        return ()
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        return (value,)
    return tuple(value)


def _order_key(dataset, instance: int) -> tuple:
    return (
        _number(dataset.get("TemporalPositionIdentifier"), 0.0),
        _number(dataset.get("TriggerTime"), 0.0),
        _number(dataset.get("EchoNumbers"), 0.0),
        _number(dataset.get("AcquisitionNumber"), 0.0),
        instance,
    )


def _enhanced_frame(dataset, index: int, pixels: np.ndarray, path: Path, sop_uid: str) -> Frame:
    plane_position = _group_item(dataset, index, "PlanePositionSequence")
    plane_orientation = _group_item(dataset, index, "PlaneOrientationSequence")
    measures = _group_item(dataset, index, "PixelMeasuresSequence")
    transform = _group_item(dataset, index, "PixelValueTransformationSequence")
    content = _group_item(dataset, index, "FrameContentSequence")
    if plane_position is None or plane_orientation is None:
        raise DicomError(
            f"enhanced multi-frame file without plane position/orientation for frame {index + 1}",
            path=path,
        )
    spacing = _float_list(measures.get("PixelSpacing")) if measures is not None else None
    thickness = None
    if measures is not None:
        thickness = _number(measures.get("SpacingBetweenSlices")) or _number(
            measures.get("SliceThickness")
        )
    source = transform if transform is not None else dataset
    key: tuple = (index,)
    if content is not None:
        key = (
            _number(content.get("TemporalPositionIndex"), 0.0),
            _as_tuple(content.get("DimensionIndexValues")),
            index,
        )
    return Frame(
        pixels=pixels,
        position=np.asarray(_float_list(plane_position.get("ImagePositionPatient"))),
        orientation=np.asarray(_float_list(plane_orientation.get("ImageOrientationPatient"))),
        pixel_spacing=tuple(spacing[:2]) if spacing else (1.0, 1.0),
        slope=_number(source.get("RescaleSlope"), 1.0) or 1.0,
        intercept=_number(source.get("RescaleIntercept"), 0.0) or 0.0,
        thickness=thickness,
        order_key=key,
        file=path,
        sop_uid=sop_uid,
        frame_number=index + 1,
    )
