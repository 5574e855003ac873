"""The app's default checkpoint learned the task: on fresh SynthRunway test clips (seeds no run has seen) it
beats repeating the source frame by a wide margin, and its confidence map is low where the source cannot
supply the pixels. A network that did not learn fails every test below but the first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from internet.model import INTERNet
from training import evaluate, metrics
from training.confidence import confidence_score
from training.synthrunway import ClipSpec, generate_clip

CHECKPOINT = Path(__file__).resolve().parents[1] / "assets" / "checkpoints" / "internet-synthrunway-128"
FRAMES = 48
SEEDS = (10_500, 10_501)  # test-split seeds outside the evaluation set (10000-10015) and validation (10600)


@pytest.fixture(scope="module")
def model() -> INTERNet:
    if not (CHECKPOINT / "model.safetensors").is_file():
        pytest.fail(f"the default checkpoint is missing: {CHECKPOINT}")
    return INTERNet.from_pretrained(CHECKPOINT)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory, model: INTERNet) -> list[Path]:
    root = tmp_path_factory.mktemp("fresh")
    size = model.config.image_size
    return [generate_clip(ClipSpec(seed=seed, index=0, frames=FRAMES, size=size), root) for seed in SEEDS]


@pytest.fixture(scope="module")
def clips(folders: list[Path], model: INTERNet) -> list[evaluate.TestClip]:
    return list(evaluate.synthrunway_clips(folders[0].parent, model.config.image_size, split="all"))


@pytest.fixture(scope="module")
def predictions(model: INTERNet, clips: list[evaluate.TestClip]) -> list[torch.Tensor]:
    """The checkpoint's self-reenactment of each clip (source = frame 0), rendered once for every test."""
    return [evaluate.reenact(model, clip.frames, torch.device("cpu")) for clip in clips]


def test_checkpoint_is_small_and_documented(model):
    assert (CHECKPOINT / "model.safetensors").stat().st_size < 20 * 2**20
    with safe_open(str(CHECKPOINT / "model.safetensors"), framework="pt") as f:
        stored = {f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    assert "F32" in stored  # float32: BatchNorm statistics in float16 moved outputs by up to 0.1
    config = json.loads((CHECKPOINT / "config.json").read_text())
    assert config["image_size"] == model.config.image_size >= 128
    card = (CHECKPOINT / "README.md").read_text()
    assert "SynthRunway" in card and "training.evaluate" in card and "blend_output" in card


def test_trained_weights_beat_the_same_network_untrained(model, clips, predictions):
    torch.manual_seed(0)
    untrained = INTERNet(model.config).eval()
    for clip, prediction in zip(clips, predictions):
        trained = metrics.l1(prediction, clip.frames)
        assert trained < 0.5 * metrics.l1(evaluate.reenact(untrained, clip.frames, torch.device("cpu")), clip.frames)


def test_beats_the_static_source_by_a_wide_margin_on_fresh_clips(clips, predictions):
    """L1 at most 0.65x the static source's on average and on each clip under 0.75x; MS-SSIM above it.

    (The checkpoint measures 0.52x and 0.50x on these two clips; phase 1 alone, 0.67x on the test set.)
    """
    ratios = []
    for clip, prediction in zip(clips, predictions):
        static = clip.frames[:1].expand_as(clip.frames)
        ratios.append(metrics.l1(prediction, clip.frames) / metrics.l1(static, clip.frames))
        assert ratios[-1] < 0.75, f"{clip.name}: L1 {ratios[-1]:.2f}x the static source's"
        assert metrics.ms_ssim(prediction, clip.frames) > metrics.ms_ssim(static, clip.frames) + 0.03
    assert sum(ratios) / len(ratios) <= 0.65, f"L1 {ratios} x the static source's"


def test_flickers_less_than_the_static_source_and_near_the_ground_truth(clips, predictions):
    """Warp error (exact flow, visible pixels) below the static source's on each clip, and on average at most
    1.3x the ground truth's (the checkpoint: 0.47x and 1.65x, static 1.19x and 2.08x; the one before it 0.66x and
    2.39x, which fails)."""
    ratios = []
    for clip, prediction in zip(clips, predictions):
        errors = {
            name: sum(metrics.warp_error(video, clip.flow, clip.visible)) / (len(clip.frames) - 1)
            for name, video in (("model", prediction), ("static", clip.frames[:1].expand_as(clip.frames)),
                                ("truth", clip.frames))
        }  # fmt: skip
        assert errors["model"] < errors["static"], f"{clip.name}: {errors}"
        ratios.append(errors["model"] / errors["truth"])
    assert sum(ratios) / len(ratios) <= 1.3, f"warp error {ratios} x the ground truth's"


def test_confidence_map_is_low_where_the_source_cannot_supply_the_pixels(model, folders):
    """ROC AUC of 1 - M against the exact disocclusion from the source frame (0.5 = M knows nothing)."""
    for folder in folders:
        score = confidence_score(model, folder, FRAMES)
        assert score.auc > 0.75, score  # 0.87 and 0.90 here
        assert score.mean_confidence_disoccluded < score.mean_confidence_visible
