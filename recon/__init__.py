"""recon: 2D images to 3D shapes, and X-ray to CT registration."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("recon")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
