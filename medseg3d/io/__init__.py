"""Volume input/output that preserves geometry: NIfTI, MHA/NRRD and DICOM in; NIfTI (and DICOM SEG) out.

Every affine is 4x4, voxel index -> RAS+ mm (the NIfTI/nibabel convention); the LPS <-> RAS flip
of ITK and DICOM happens once, in :mod:`medseg3d.io.geometry`.
"""

from medseg3d.io.checks import check_finite, check_label_values, check_single_channel
from medseg3d.io.dicom_series import SeriesInfo, list_dicom_series
from medseg3d.io.dicom_write import write_dicom_seg, write_dicom_series
from medseg3d.io.geometry import lps_to_ras, ras_to_lps
from medseg3d.io.load import load_volume
from medseg3d.io.resample import reorient, reorient_back, resample_to_grid, resample_to_spacing
from medseg3d.io.save import save_volume
from medseg3d.io.volume import Volume

__all__ = [
    "SeriesInfo",
    "Volume",
    "check_finite",
    "check_label_values",
    "check_single_channel",
    "list_dicom_series",
    "load_volume",
    "lps_to_ras",
    "ras_to_lps",
    "reorient",
    "reorient_back",
    "resample_to_grid",
    "resample_to_spacing",
    "save_volume",
    "write_dicom_seg",
    "write_dicom_series",
]
