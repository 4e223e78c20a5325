"""psl: pseudo strong labels for large-scale weakly supervised audio tagging."""

from psl._version import __version__

__all__ = ["__version__"]
