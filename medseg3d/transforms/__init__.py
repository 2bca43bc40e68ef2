"""medseg3d.transforms."""
