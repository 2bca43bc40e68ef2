"""medseg3d.data."""
