"""monai_synth.utils."""
