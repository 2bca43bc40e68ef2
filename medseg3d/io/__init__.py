"""Volume input/output that preserves geometry: NIfTI, MHA/NRRD and DICOM in; NIfTI (and DICOM SEG) out."""

from medseg3d.io.volume import Volume

__all__ = ["Volume"]
