"""monai_synth.apps: the workflows bundles call, one folder each, in the spirit of ``monai.apps``.

``generation``: the labelled-data factory shared by every generator; ``datasetgan``: annotation, interpreter, projection;
``semanticgan``: semi-supervised data, the w+ encoder, segmentation of real images.
"""

from __future__ import annotations

from . import datasetgan, generation, semanticgan

__all__ = ["datasetgan", "generation", "semanticgan"]
