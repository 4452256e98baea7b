"""recon: 2D images to 3D shapes, and X-ray to CT registration."""

__version__ = "0.1.0"
