"""medseg3d.inference."""
