"""medseg3d.metrics."""
