"""Both motion sources report where the anchors sit on the driving frame itself, for the overlays."""

from __future__ import annotations

import numpy as np
import torch

from internet import INTERNet, load_config
from internet.sources.model import ModelSource


def test_relative_model_motion_keeps_the_detected_driving_anchors_for_overlays():
    torch.manual_seed(0)
    model = INTERNet(load_config("tiny")).eval()
    rng = np.random.default_rng(0)
    source, first, later = (rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(3))
    motion_source = ModelSource(model, source, relative=True)
    motion_source.render(first, None)  # the first frame becomes the reference
    _, motion = motion_source.render(later, None)
    with torch.inference_mode():
        detected = model.detect(torch.from_numpy(later).permute(2, 0, 1)[None].float() / 255).points[0].numpy()
    np.testing.assert_allclose(motion.anchors_on_driving, detected, atol=1e-6)
    assert not np.allclose(motion.anchors_driving, detected)  # relative motion moved them

    absolute = ModelSource(model, source, relative=False)
    _, motion = absolute.render(later, None)
    assert motion.anchors_observed is None
    np.testing.assert_allclose(motion.anchors_on_driving, detected, atol=1e-6)
