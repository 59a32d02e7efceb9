"""monai_synth.networks.blocks."""
