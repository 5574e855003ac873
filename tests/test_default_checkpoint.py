"""The app's default checkpoint: it loads, it learned something, and (the issue's bar) it should beat the
static-source baseline on L1 on fresh SynthRunway test clips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from internet.model import INTERNet
from training import evaluate
from training.synthrunway import ClipSpec, generate_clip

CHECKPOINT = Path(__file__).resolve().parents[1] / "assets" / "checkpoints" / "internet-synthrunway-128"
FRAMES = 48
SEEDS = (10_500, 10_501)  # test-split seeds outside the evaluation set (10000-10007)


@pytest.fixture(scope="module")
def model() -> INTERNet:
    if not (CHECKPOINT / "model.safetensors").is_file():
        pytest.fail(f"the default checkpoint is missing: {CHECKPOINT}")
    return INTERNet.from_pretrained(CHECKPOINT)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, model: INTERNet) -> list[evaluate.TestClip]:
    root = tmp_path_factory.mktemp("fresh")
    for seed in SEEDS:
        generate_clip(ClipSpec(seed=seed, index=0, frames=FRAMES, size=model.config.image_size), root)
    return list(evaluate.synthrunway_clips(root, model.config.image_size))


def l1_of(model: INTERNet, clip: evaluate.TestClip) -> float:
    prediction = evaluate.reenact(model, clip.frames, torch.device("cpu"))
    return float((prediction - clip.frames).abs().mean())


def test_checkpoint_is_small_fp16_and_documented(model):
    assert (CHECKPOINT / "model.safetensors").stat().st_size < 50 * 2**20
    with safe_open(str(CHECKPOINT / "model.safetensors"), framework="pt") as f:
        stored = {f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    assert "F16" in stored and "F32" not in stored
    assert all(p.dtype == torch.float32 for p in model.parameters())  # upcast on load
    config = json.loads((CHECKPOINT / "config.json").read_text())
    assert config["image_size"] == model.config.image_size
    card = (CHECKPOINT / "README.md").read_text()
    assert "SynthRunway" in card and "training.evaluate" in card


def test_trained_weights_beat_the_same_network_untrained(model, clips):
    torch.manual_seed(0)
    untrained = INTERNet(model.config).eval()
    for clip in clips:
        assert l1_of(model, clip) < 0.75 * l1_of(untrained, clip)


@pytest.mark.parametrize("index", range(len(SEEDS)))
def test_beats_static_source_on_l1_on_a_fresh_test_clip(model, clips, index):
    clip = clips[index]
    static_l1 = float((clip.frames[:1] - clip.frames).abs().mean())
    model_l1 = l1_of(model, clip)
    assert model_l1 < static_l1, f"model L1 {model_l1:.4f} vs static source {static_l1:.4f}"
