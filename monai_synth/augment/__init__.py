"""monai_synth.augment."""
