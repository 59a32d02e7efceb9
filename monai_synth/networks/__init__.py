"""monai_synth.networks: paired generator and discriminator networks (``nets``) and their blocks."""

from __future__ import annotations

from .nets import *  # noqa: F401,F403
from .nets import __all__ as _nets_all

__all__ = list(_nets_all)
