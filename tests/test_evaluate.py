"""Evaluation protocol (training.evaluate) and the ablation's config/table (training.ablation)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from internet.errors import ConfigError, InputError
from internet.model import INTERNet
from training import ablation, evaluate
from training.metrics import PSNR_CAP
from training.synthrunway import ClipSpec, generate_clip

SIZE = 64


def shifted_clip(frames: int = 5, dx: int = 2, size: int = 48) -> evaluate.TestClip:
    """A random texture moving left by dx px per frame, with its exact backward flow."""
    g = torch.Generator().manual_seed(0)
    base = torch.rand(3, size, size + frames * dx + 2, generator=g)
    video = torch.stack([base[:, :, t * dx : t * dx + size] for t in range(frames)])
    flow = torch.zeros(frames - 1, size, size, 2)
    flow[..., 0] = dx  # frame_t(x) = frame_{t-1}(x + dx)
    visible = torch.ones(frames - 1, size, size, dtype=torch.bool)
    visible[..., -dx:] = False
    return evaluate.TestClip("shift", video, flow, visible)


def exact_flow(dx: int):
    """A FlowFn giving the exact flow between frames t-1 and t+1 of ``shifted_clip`` (calls alternate)."""
    calls = {"n": 0}

    def fn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        f = np.zeros(a.shape[:2] + (2,), np.float32)
        f[..., 0] = -2 * dx if calls["n"] % 2 == 0 else 2 * dx  # a(x) = b(x + f)
        calls["n"] += 1
        return f

    return fn


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sr")
    for seed in (10000, 10001):
        generate_clip(ClipSpec(seed=seed, index=0, frames=6, size=SIZE), root)
    generate_clip(ClipSpec(seed=0, index=0, frames=4, size=SIZE), root)  # a training clip: not evaluated
    return root


def _tiny():
    from internet.config import load_config

    return load_config("tiny")


def test_identical_video_scores_perfectly_and_e_warp_equals_its_floor():
    clip = shifted_clip()
    m = evaluate.video_metrics(clip.frames, clip, exact_flow(2))
    assert m.l1 == 0.0 and m.psnr == PSNR_CAP
    assert m.ms_ssim == pytest.approx(1.0, abs=1e-5)
    assert m.warp_error == pytest.approx(0.0, abs=1e-10)
    assert m.warp_error == m.warp_error_floor
    # Exact flow reproduces frame t except at the borders (content from outside); zero flow cannot.
    no_motion = evaluate.video_metrics(clip.frames, clip, lambda a, b: np.zeros(a.shape[:2] + (2,), np.float32))
    assert m.interp_psnr > no_motion.interp_psnr + 10


def test_a_known_offset_gives_known_reconstruction_errors():
    clip = shifted_clip()
    pred = clip.frames * 0.5 + 0.25  # keeps values in [0, 1]
    m = evaluate.video_metrics(pred, clip, exact_flow(2))
    diff = pred - clip.frames
    assert m.l1 == pytest.approx(float(diff.abs().mean()), rel=1e-6)
    expected_psnr = np.mean([-10 * np.log10(float((d**2).mean())) for d in diff])
    assert m.psnr == pytest.approx(expected_psnr, rel=1e-6)
    # An affine map of a perfectly warped video is still perfectly warped: E_warp scales by 0.5**2.
    assert m.warp_error == pytest.approx(0.25 * evaluate.video_metrics(clip.frames, clip).warp_error, abs=1e-9)


def test_static_source_has_temporal_error_only_where_the_ground_truth_flow_moves():
    # A square of texture sliding right over a still textured background; flow is non-zero only in it.
    size, dx, frames = 48, 2, 4
    g = torch.Generator().manual_seed(1)
    background, square = torch.rand(3, size, size, generator=g), torch.rand(3, 16, 40, generator=g)
    video = background.repeat(frames, 1, 1, 1)
    flow = torch.zeros(frames - 1, size, size, 2)
    for t in range(frames):
        video[t, :, 16:32, 8:32] = square[:, :, 16 - t * dx : 40 - t * dx]  # frame_t(x) = frame_{t-1}(x - dx)
        if t:
            flow[t - 1, 16:32, 8:32, 0] = -dx
    visible = torch.ones(frames - 1, size, size, dtype=torch.bool)
    visible[:, 16:32, 8 : 8 + dx] = False  # the square's trailing edge came from the background
    moving = (flow.norm(dim=-1) > 0) & visible
    clip = evaluate.TestClip("square", video, flow, visible)
    assert evaluate.video_metrics(video, clip).warp_error < 1e-10  # the flow is exact
    static = video[:1].expand_as(video).contiguous()
    only_still = evaluate.TestClip("still", video, flow, visible & ~moving)
    only_moving = evaluate.TestClip("moving", video, flow, moving)
    assert evaluate.video_metrics(static, only_still).warp_error < 1e-10
    assert evaluate.video_metrics(static, only_moving).warp_error > 0.05
    # Over the whole frame the static error is the moving part's error diluted by the still pixels.
    whole = evaluate.video_metrics(static, clip).warp_error
    share = moving.float().sum().item() / visible.float().sum().item()
    assert whole == pytest.approx(share * evaluate.video_metrics(static, only_moving).warp_error, rel=1e-4)


def test_synthrunway_reader_uses_the_test_split_and_limits_frames(synth_root):
    clips = list(evaluate.synthrunway_clips(synth_root, SIZE, max_frames=4))
    assert [c.name for c in clips] == ["s10000_c00000", "s10001_c00000"]
    assert all(c.frames.shape == (4, 3, SIZE, SIZE) and c.flow.shape == (3, SIZE, SIZE, 2) for c in clips)
    resized = next(evaluate.synthrunway_clips(synth_root, 2 * SIZE, max_frames=3))
    assert resized.frames.shape[-1] == 2 * SIZE
    # Flow vectors scale with the image.
    assert float(resized.flow.abs().mean()) == pytest.approx(2 * float(clips[0].flow[:2].abs().mean()), rel=0.05)


def test_evaluate_model_rows_and_json_layout(synth_root):
    torch.manual_seed(0)
    model = INTERNet(_tiny())
    report = evaluate.evaluate_model(model, evaluate.synthrunway_clips(synth_root, SIZE), progress=False)
    assert len(report.clips) == 2
    gt, static = report.baselines["ground_truth"].mean, report.baselines["static_source"].mean
    assert gt.l1 == 0.0 and gt.psnr == PSNR_CAP and gt.warp_error == pytest.approx(gt.warp_error_floor)
    assert static.l1 > 0 and static.warp_error > 0 and static.psnr < PSNR_CAP
    # The model row is the mean over clips of the per-clip values.
    assert report.overall.mean.l1 == pytest.approx(np.mean([c.model.l1 for c in report.clips]))
    data = json.loads(json.dumps(evaluate.report_to_dict(report)))
    keys = {"l1", "psnr", "ms_ssim", "lpips", "fid", "warp_error", "interp_psnr"}
    assert keys <= set(data["overall"]) and keys <= set(data["baselines"]["static_source"])
    assert keys <= set(data["baselines"]["ground_truth"])
    assert data["overall"]["lpips"] is None and data["overall"]["fid"] is None
    assert all(isinstance(data["overall"][k], float) for k in keys - {"lpips", "fid"})
    assert len(data["clips"]) == 2


def test_cli_writes_json_and_refuses_perceptual_metrics_it_cannot_compute(synth_root, tmp_path, capsys):
    torch.manual_seed(0)
    ckpt = INTERNet(_tiny()).save_pretrained(tmp_path / "tiny")
    out = tmp_path / "eval.json"
    argv = ["--checkpoint", str(ckpt), "--data", str(synth_root), "--max-frames", "4", "--no-progress"]
    assert evaluate.main([*argv, "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["overall"]["l1"] > 0 and "not computed" in data["not_computed"]["lpips"]
    weights = tmp_path / "lpips.pth"
    weights.write_bytes(b"x")
    assert evaluate.main([*argv, "--lpips-weights", str(weights)]) == 1
    assert "error:" in capsys.readouterr().err


def test_real_video_folder_uses_dis_flow(tmp_path):
    clip = shifted_clip(frames=5, dx=1, size=64)
    folder = tmp_path / "videos" / "walk"
    folder.mkdir(parents=True)
    for t, frame in enumerate(clip.frames):
        image = (frame.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        image = cv2.GaussianBlur(image, (5, 5), 1.5)  # DIS needs some smoothness
        cv2.imwrite(str(folder / f"{t:04d}.png"), image[..., ::-1])
    clips = list(evaluate.video_clips(tmp_path / "videos", 64))
    assert len(clips) == 1 and clips[0].flow.shape == (4, 64, 64, 2)
    inner = clips[0].flow[:, 16:-16, 16:-16, 0]
    assert inner.median() == pytest.approx(1.0, abs=0.25)  # the texture moves 1 px per frame


def test_missing_data_folder_is_an_input_error(tmp_path):
    torch.manual_seed(0)
    ckpt = INTERNet(_tiny()).save_pretrained(tmp_path / "tiny")
    with pytest.raises(InputError):
        evaluate.evaluate_checkpoint(ckpt, tmp_path / "nowhere")


# --------------------------------------------------------------------------- ablation


def test_ablation_config_applies_preset_and_scheme_per_variant():
    config = ablation.load_ablation("training/configs/ablation-synthrunway.yaml")
    names = [v.name for v in config.variants]
    assert names == ["SS4x-a", "SS4x-b", "SS4x-c", "MS-b", "MS-c"]
    experiments = [ablation.variant_experiment(config, v, 7) for v in config.variants]
    assert [e.model.generator.skip_mode for e in experiments] == ["ss4x"] * 3 + ["multiscale"] * 2
    assert [e.loss.temporal for e in experiments] == ["none", "extrinsic", "intrinsic", "extrinsic", "intrinsic"]
    # Identical data, seeds, batch and steps for every variant.
    assert len({(e.data, e.train) for e in experiments}) == 1
    assert experiments[0].train.max_steps == 7


def test_ablation_config_rejects_unknown_schemes(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: x.yaml\ntest_data: t\nsteps: 1\nvariants:\n  A: {preset: small-128, temporal: fancy}\n")
    with pytest.raises(ConfigError):
        ablation.load_ablation(bad)


def test_markdown_table_bolds_the_best_value_per_metric():
    def row(l1: float, warp: float) -> dict:
        values = {"l1": l1, "psnr": 20.0, "ms_ssim": 0.5, "lpips": None, "fid": None,
                  "warp_error": warp, "interp_psnr": 30.0}  # fmt: skip
        return {"overall": values, "overall_ci95": {k: (0.0 if v is not None else None) for k, v in values.items()}}

    results = {
        "variants": {
            "SS4x-a": {**row(0.2, 0.002), "preset": "small-ss4x-128", "temporal": "none"},
            "MS-c": {**row(0.1, 0.003), "preset": "small-128", "temporal": "intrinsic"},
        },
        "baselines": {"static_source": row(0.3, 0.01), "ground_truth": row(0.0, 0.001)},
    }
    lines = ablation.markdown_table(results).splitlines()
    ss4x, ms = lines[2], lines[3]
    assert "**0.1000 ± 0.0000**" in ms and "**0.1000" not in ss4x  # lower L1 wins
    assert "**2.00 ± 0.00**" in ss4x  # lower E_warp (x1000) wins
    assert "| MS | (c) |" in ms and "n/c" in ms


def test_paired_differences_pair_clips_by_name_and_count_wins():
    """Paired over clips: a - b per clip, in any clip order; wins follow the metric's direction."""

    def variant(values: dict[str, float]) -> dict:
        row = {"psnr": 20.0, "warp_error": 1e-3, "interp_psnr": 40.0}
        static = {**row, "l1": 0.5, "ms_ssim": 0.5}
        clips = [{"name": k, "model": {**row, "l1": v, "ms_ssim": 1 - v}, "static_source": static}
                 for k, v in values.items()]  # fmt: skip
        return {"clips": clips, "preset": "small-128", "temporal": "intrinsic"}

    results = {"variants": {"MS-c": variant({"a": 0.1, "b": 0.2, "c": 0.3}),
                            "MS-b": variant({"c": 0.4, "a": 0.3, "b": 0.2})}}  # fmt: skip
    mean, ci, wins, n = ablation.paired_difference(results, "MS-c", "MS-b", "l1", higher=False)
    assert mean == pytest.approx((-0.2 + 0.0 - 0.1) / 3) and n == 3 and wins == 2  # the tie in "b" is no win
    assert ci > 0
    _, _, ssim_wins, _ = ablation.paired_difference(results, "MS-c", "MS-b", "ms_ssim", higher=True)
    assert ssim_wins == 2
    table = ablation.paired_table(results)
    assert "MS-c − MS-b" in table and "MS-c − static source" in table
