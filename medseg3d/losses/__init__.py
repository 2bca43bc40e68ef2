"""medseg3d.losses."""
