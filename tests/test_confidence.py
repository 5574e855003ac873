"""The confidence-map score: exact disocclusion from SynthRunway's scene, and the ROC AUC it is scored with."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from internet.config import load_config
from internet.model import INTERNet
from training.confidence import confidence_score, disoccluded_from_source, roc_auc
from training.synthrunway import ClipSpec, generate_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return generate_clip(ClipSpec(seed=10_900, index=0, frames=12, size=64), tmp_path_factory.mktemp("clip"))


def test_roc_auc_matches_hand_counted_pairs_and_handles_ties():
    # positives 0.35, 0.8 vs negatives 0.1, 0.4: 3 of the 4 (positive, negative) pairs are ordered right.
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert roc_auc(np.array([0.5, 0.5]), np.array([0, 1])) == pytest.approx(0.5)  # a tie counts one half
    assert roc_auc(np.array([0.0, 1.0]), np.array([0, 1])) == 1.0
    assert np.isnan(roc_auc(np.array([0.1, 0.2]), np.array([1, 1])))


def test_disocclusion_from_the_source_agrees_with_the_clips_own_visibility_for_frame_one(clip):
    """From frame 1 straight to frame 0 is the clip's first adjacent pair: the rebuilt scene must say exactly
    what visible.npy says there, and frame 0 (the source itself) has nothing disoccluded."""
    disoccluded = disoccluded_from_source(clip, 12)
    assert not disoccluded[0].any()
    assert np.array_equal(disoccluded[1], ~np.load(clip / "visible.npy")[0])
    assert disoccluded[-1].mean() >= disoccluded[1].mean()  # the figure moves further from frame 0


def test_a_constant_confidence_map_scores_one_half(clip):
    torch.manual_seed(0)
    model = INTERNet(load_config("tiny")).eval()
    with torch.no_grad():
        model.dense_motion.confidence.weight.zero_()  # M is the same everywhere: it cannot tell anything apart
    assert confidence_score(model, clip, 12).auc == pytest.approx(0.5)
