"""monai_synth.apps.semanticgan: the SemanticGAN workflows the ``semanticgan`` bundle calls.

Semi-supervised training data, the image -> w+ encoder and its training, segmentation of real images.
"""

from __future__ import annotations

from .data import SemiSupervisedData
from .encoder import encoder_losses, load_encoder, train_encoder, train_semantic_encoder
from .segmentation import segment_images

__all__ = [
    "SemiSupervisedData",
    "encoder_losses",
    "load_encoder",
    "segment_images",
    "train_encoder",
    "train_semantic_encoder",
]
