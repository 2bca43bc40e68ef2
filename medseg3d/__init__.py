"""medseg3d: segmentation of 3D medical volumes with the U-Net family.

The package layout follows the data: ``io`` -> ``transforms`` -> ``nn`` -> ``training`` /
``inference`` -> ``cli``.
"""

from medseg3d.errors import MedsegError

__version__ = "0.1.0"

__all__ = ["MedsegError", "__version__"]
