"""Building blocks shared by the GAN networks."""

from __future__ import annotations

from .equalized import LRELU_GAIN, EqualizedConv2d, EqualizedLinear, ScaledLeakyReLU
from .fir import FIRBlur2d, FIRDownsample2d, FIRUpsample2d, downsample2d, fir_filter, upfirdn2d, upsample2d
from .minibatch_std import MinibatchStdDev
from .modulated import FromImage, ModulatedConv2d, NoiseInjection, StyleLayer, ToImage, modulated_conv2d

__all__ = [
    "MinibatchStdDev",
    "LRELU_GAIN",
    "EqualizedLinear",
    "EqualizedConv2d",
    "ScaledLeakyReLU",
    "fir_filter",
    "upfirdn2d",
    "upsample2d",
    "downsample2d",
    "FIRUpsample2d",
    "FIRDownsample2d",
    "FIRBlur2d",
    "modulated_conv2d",
    "ModulatedConv2d",
    "NoiseInjection",
    "StyleLayer",
    "ToImage",
    "FromImage",
]
