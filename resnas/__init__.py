"""resnas: search and prune residual networks (ResNet, Wide ResNet)."""

from importlib.metadata import version

__version__ = version("resnas")  # pyproject.toml states it; installed metadata carries it
