"""medseg3d.training."""
