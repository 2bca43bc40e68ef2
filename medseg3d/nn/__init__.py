"""Networks of the U-Net family, 2D and 3D, built from one layer factory (:mod:`medseg3d.nn.layers`)."""
