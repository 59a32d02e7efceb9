"""monai_synth.evaluation."""
