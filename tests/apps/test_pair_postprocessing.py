"""The one decode -> post-process chain shared by the dataset factories and the inference configs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_synth.apps.generation import pair_postprocessing, resolve_num_components
from monai_synth.transforms import DecodePaired, PostprocessMask, mask_change_fraction


def _raw_pair() -> torch.Tensor:
    """A 1-channel image + 1 binary mask channel: a square, a speck and a hole, image values beyond [-1, 1]."""
    mask = -torch.ones(16, 16)
    mask[3:11, 3:11] = 1.0
    mask[6, 6] = -1.0  # hole
    mask[14, 14] = 1.0  # speck
    image = torch.linspace(-1.5, 1.5, 256).reshape(16, 16)
    return torch.stack([image, mask])


def test_generator_chain_equals_decode_then_postprocess():
    raw = _raw_pair()
    out = pair_postprocessing(1, 2, num_components=1)({"pred": raw})
    image, label = DecodePaired(1, 2)(raw)
    cleaned = PostprocessMask(2, num_components=1)(label)
    np.testing.assert_array_equal(np.asarray(out["gen_label"]), np.asarray(cleaned))
    torch.testing.assert_close(torch.as_tensor(np.asarray(out["gen_image"])), image)
    assert float(out["gen_image"].min()) == -1.0 and float(out["gen_image"].max()) == 1.0
    assert out["postprocess_change"] == pytest.approx(mask_change_fraction(label, cleaned)) == pytest.approx(2 / 256)
    assert int(np.asarray(out["gen_label"])[0, 6, 6]) == 1 and int(np.asarray(out["gen_label"])[0, 14, 14]) == 0


def test_without_postprocessing_the_labels_are_the_decoded_ones():
    raw = _raw_pair()
    out = pair_postprocessing(1, 2, num_components=None)({"pred": raw})
    np.testing.assert_array_equal(np.asarray(out["gen_label"]), np.asarray(DecodePaired(1, 2)(raw)[1]))
    assert "postprocess_change" not in out


def test_interpreter_chain_flattens_clamps_and_postprocesses():
    raw = _raw_pair()
    label = (raw[1:] > 0).long()
    item = {"image": raw[:1], "label": label, "uncertainty": torch.rand(1, 16, 16)}
    out = pair_postprocessing(1, 2, num_components=1, label_source="interpreter")({"pred": item})
    assert {"gen_image", "gen_label", "gen_uncertainty"} <= set(out) and "pred" not in out
    assert float(out["gen_image"].min()) == -1.0 and float(out["gen_image"].max()) == 1.0
    assert int(np.asarray(out["gen_label"])[0, 14, 14]) == 0 and out["postprocess_change"] > 0


def test_image_mode_has_no_label_and_bad_settings_are_refused():
    out = pair_postprocessing(1, 2, mode="image")({"pred": torch.full((1, 8, 8), 3.0)})
    assert "gen_label" not in out and float(out["gen_image"].max()) == 1.0
    with pytest.raises(ValueError, match="label_source"):
        pair_postprocessing(1, 2, label_source="human")
    assert resolve_num_components("auto", {"data": {"components_per_class": [1, 2]}}) == 2
    assert resolve_num_components("auto", {"data": {}}) == 1
    with pytest.raises(ValueError, match="num_components"):
        resolve_num_components(0, {})
