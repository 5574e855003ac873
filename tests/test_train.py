"""The training loop on the tiny config: steps, overfitting, exact resume, crash safety, NaN handling, CLI."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from internet import INTERNet
from internet.errors import CheckpointError, ConfigError
from training.checkpointing import (
    Progress,
    Trainables,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    warm_start,
)
from training.config import ExperimentConfig, load_experiment, replace
from training.data import SynthRunwayDataset, VideoSample
from training.discriminator import MultiScaleDiscriminator
from training.synthrunway import generate
from training.train import TrainingError, main, training_loop
from training.visualize import anchor_colors, draw_anchors, training_grid

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "training" / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Two SynthRunway clips of 6 frames at 64x64 (rendered in well under a second)."""
    root = tmp_path_factory.mktemp("synthrunway")
    generate(root, clips=2, frames=6, size=64, seed=0, progress=False)
    return root


def tiny(clips: Path, **train) -> ExperimentConfig:
    config = load_experiment(TINY, [f"data.root={clips}"])
    return replace(config, train={"batch_size": 1, **train})


def tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


class FixedBatch(torch.utils.data.Dataset):
    """The same sample for every index (for the overfit test), optionally with NaN pixels."""

    def __init__(self, sample: VideoSample, length: int = 1, nan_every: int = 0) -> None:
        self.sample, self.length, self.nan_every = sample, length, nan_every

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> VideoSample:
        s = self.sample
        if self.nan_every and index % self.nan_every == 0:
            bad = s.driving.clone()
            bad[:, :4, :4] = float("nan")
            return VideoSample(s.source, bad, s.previous, s.flow, s.valid, s.clip, s.t)
        return s


# --------------------------------------------------------------------------- config


def test_every_shipped_config_parses_and_overrides_are_validated():
    for name in ("tiny", "synthrunway-128", "synthrunway-256", "fashion-512"):
        config = load_experiment(ROOT / "training" / "configs" / f"{name}.yaml")
        assert config.train.batch_size >= 1
    paper = load_experiment(ROOT / "training" / "configs" / "fashion-512.yaml")
    assert (paper.model.image_size, paper.train.batch_size, paper.train.epochs) == (512, 16, 100)
    assert paper.loss.temporal == "intrinsic" and paper.model.generator.skip_mode == "multiscale"
    config = load_experiment(TINY, ["train.lr=1e-4", "model.preset=small-128", "model.generator.skip_mode=ss4x"])
    assert config.train.lr == 1e-4 and config.model.image_size == 128 and config.model.generator.skip_mode == "ss4x"
    for bad, match in [
        ("train.lrr=1", "lrr"),
        ("train.lr=fast", "train.lr"),
        ("loss.temporal=sometimes", "temporal"),
        ("optim.lr=1", "optim"),
        ("model.preset=huge", "preset"),
        ("train.batch_size=0", "batch_size"),
    ]:
        with pytest.raises(ConfigError, match=match):
            load_experiment(TINY, [bad])


# --------------------------------------------------------------------------- steps


@pytest.mark.parametrize("temporal", ["none", "extrinsic", "intrinsic"])
def test_one_step_per_temporal_scheme_changes_the_weights(clips, tmp_path, temporal):
    config = replace(tiny(clips, max_steps=1, image_every=1), loss={"temporal": temporal})
    result = training_loop(config, tmp_path)
    torch.manual_seed(config.train.seed)
    initial = INTERNet(config.model).state_dict()
    trained = tensors(tmp_path / "final" / "model.safetensors")
    assert all(torch.isfinite(v).all() for v in trained.values())
    changed = [k for k in initial if initial[k].is_floating_point() and not torch.equal(initial[k], trained[k])]
    assert len(changed) > len(initial) // 2
    values = result.history[-1].values
    assert all(torch.isfinite(torch.tensor(v)) for k, v in values.items() if not k.startswith("grad_norm"))
    assert (values["G/temporal"] > 0) == (temporal != "none")
    assert result.progress.skipped_steps == 0
    assert INTERNet.from_pretrained(tmp_path / "final").config == config.model
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert "weight-free substitute" in (tmp_path / "log.txt").read_text()


def test_a_vgg_weights_file_switches_on_the_vgg_and_style_losses(clips, tmp_path):
    from tests.test_objective import _fake_vgg_state  # a file in the torchvision layout (not pretrained)

    torch.save(_fake_vgg_state(), tmp_path / "vgg19.pth")
    config = replace(tiny(clips, max_steps=1, image_every=0), loss={"vgg_weights": str(tmp_path / "vgg19.pth")})
    result = training_loop(config, tmp_path / "run")
    assert result.history[-1].values["G/style"] > 0
    assert f"VGG-19 from {tmp_path / 'vgg19.pth'}" in (tmp_path / "run" / "log.txt").read_text()


def test_twenty_steps_on_one_batch_lower_the_reconstruction_loss(clips, tmp_path):
    sample = SynthRunwayDataset(clips, size=64, min_offset=1)[0]
    config = replace(tiny(clips, max_steps=20, checkpoint_every=100, image_every=0, lr=1e-3), loss={"adversarial": 0.0})
    result = training_loop(config, tmp_path, dataset=FixedBatch(sample))
    perceptual = [log.values["G/perceptual"] for log in result.history]
    total = [log.values["G/total"] for log in result.history]
    assert len(perceptual) == 20
    assert sum(perceptual[-3:]) / 3 < 0.8 * perceptual[0]
    assert sum(total[-3:]) / 3 < total[0]


# --------------------------------------------------------------------------- exact resume and crash safety


def _final_state(out: Path, step: int) -> dict[str, torch.Tensor]:
    ckpt = out / "checkpoints" / f"step-{step:07d}"
    state = {}
    for name in ("generator", "discriminator", "optimizers"):
        state.update({f"{name}/{k}": v for k, v in tensors(ckpt / f"{name}.safetensors").items()})
    return state


def _assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def test_resume_is_bit_exact(clips, tmp_path):
    """2N steps straight == N steps, a fresh start with --resume, N more steps (N=3 ends mid-epoch)."""
    config = tiny(clips, max_steps=6, checkpoint_every=100)
    training_loop(config, tmp_path / "straight")
    training_loop(replace(config, train={"max_steps": 3}), tmp_path / "split")
    torch.manual_seed(1234)  # resume must not depend on the state the process happens to be in
    result = training_loop(config, tmp_path / "split", resume=True)
    assert (result.progress.step, result.progress.epoch, result.progress.batch_in_epoch) == (6, 2, 2)
    _assert_identical(_final_state(tmp_path / "straight", 6), _final_state(tmp_path / "split", 6))
    # Without --resume an existing run is never overwritten.
    with pytest.raises(ConfigError, match="--resume"):
        training_loop(config, tmp_path / "split")


def _fresh_trainables(config: ExperimentConfig) -> Trainables:
    g = INTERNet(config.model)
    d = MultiScaleDiscriminator(config.model.discriminator)
    return Trainables(
        g,
        d,
        torch.optim.Adam(g.parameters()),
        torch.optim.Adam(d.parameters()),
        torch.amp.GradScaler("cpu", enabled=False),
        torch.amp.GradScaler("cpu", enabled=False),
    )


def test_sigkill_at_any_time_resumes_from_the_last_complete_checkpoint(clips, tmp_path):
    steps = 8
    cmd = [
        sys.executable, "-m", "training.train", "--config", str(TINY), "--out", str(tmp_path / "killed"),
        "--max-steps", str(steps), "--set", f"data.root={clips}", "--set", "train.batch_size=1",
        "--set", "train.checkpoint_every=1", "--set", "train.keep_checkpoints=3",
    ]  # fmt: skip
    # Same thread count as this process: the resumed and straight runs below run here, and float reductions
    # are only bit-identical across processes with the same number of threads.
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    ckpts = tmp_path / "killed" / "checkpoints"
    while not (ckpts / "step-0000002").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(random.Random(os.getpid()).uniform(0.0, 0.15))  # somewhere in a step or in a save
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    complete = list_checkpoints(ckpts)
    assert complete, "the run was killed before its first checkpoint"
    config = tiny(clips, max_steps=steps, checkpoint_every=1, keep_checkpoints=3)
    for path in complete:  # every folder named step-* is loadable
        restored = load_checkpoint(path, _fresh_trainables(config))
        assert restored.progress.step == int(path.name.split("-")[1])
    training_loop(config, tmp_path / "killed", resume=True)
    training_loop(replace(config, train={"checkpoint_every": 100}), tmp_path / "straight")
    _assert_identical(_final_state(tmp_path / "straight", steps), _final_state(tmp_path / "killed", steps))


def test_interrupted_or_failed_save_leaves_the_previous_checkpoint_loadable(clips, tmp_path):
    config = tiny(clips, max_steps=2, checkpoint_every=1)
    training_loop(config, tmp_path)
    ckpts = tmp_path / "checkpoints"
    good = latest_checkpoint(ckpts)
    assert good is not None and good.name == "step-0000002"
    # What a kill in the middle of writing step 3 leaves behind: a temporary folder with partial files.
    partial = ckpts / ".tmp-step-0000003"
    partial.mkdir()
    (partial / "generator.safetensors").write_bytes((good / "generator.safetensors").read_bytes()[:100])
    assert latest_checkpoint(ckpts) == good
    # A save that fails (here: NaN weights are refused) leaves no new step folder behind.
    trainables = _fresh_trainables(config)
    load_checkpoint(good, trainables)
    with torch.no_grad():
        next(trainables.generator.parameters()).fill_(float("nan"))
    from training.checkpointing import save_checkpoint

    with pytest.raises(CheckpointError, match="NaN"):
        save_checkpoint(ckpts, trainables, Progress(step=3), [], {}, keep=3)
    assert latest_checkpoint(ckpts) == good
    load_checkpoint(good, _fresh_trainables(config))
    # Resuming continues from step 2, and the next save clears the stale temporary folder.
    result = training_loop(replace(config, train={"max_steps": 3}), tmp_path, resume=True)
    assert result.progress.step == 3 and not partial.exists()
    assert [p.name for p in list_checkpoints(ckpts)] == ["step-0000002", "step-0000003"][-3:]


# --------------------------------------------------------------------------- NaN handling


def test_nan_steps_are_skipped_and_repeated_nans_stop_the_run(clips, tmp_path):
    sample = SynthRunwayDataset(clips, size=64, min_offset=1)[0]
    # Every second sample has NaN pixels: those steps are skipped, counted, and never reach a checkpoint.
    config = tiny(clips, max_steps=4, checkpoint_every=1, max_bad_steps=2)
    result = training_loop(config, tmp_path / "some", dataset=FixedBatch(sample, length=2, nan_every=2))
    assert result.progress.skipped_steps == 2 and result.progress.step == 4
    for path in list_checkpoints(tmp_path / "some" / "checkpoints"):
        assert all(torch.isfinite(v).all() for v in tensors(path / "generator.safetensors").values())
    # Only NaNs: the run stops after max_bad_steps with a clear message, the weights untouched.
    with pytest.raises(TrainingError, match="2 steps in a row had NaN"):
        training_loop(config, tmp_path / "all", dataset=FixedBatch(sample, length=2, nan_every=1))
    assert latest_checkpoint(tmp_path / "all" / "checkpoints") is None or all(
        torch.isfinite(v).all()
        for v in tensors(latest_checkpoint(tmp_path / "all" / "checkpoints") / "generator.safetensors").values()
    )


# --------------------------------------------------------------------------- visualisation and CLI


def test_anchor_drawing_and_training_grid():
    frames = torch.zeros(1, 3, 64, 64)
    points = torch.tensor([[[0.0, 0.0], [-1.0, 1.0]]])  # centre, bottom-left corner
    drawn = draw_anchors(frames, points, radius=2)
    colors = anchor_colors(2)
    centre = round(31.5)
    assert torch.allclose(drawn[0, :, centre, centre], colors[0])
    assert torch.allclose(drawn[0, :, 63, 0], colors[1])
    assert drawn[0, :, 10, 50].abs().sum() == 0  # far from both anchors
    model = INTERNet(load_experiment(TINY).model).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))
    grid = training_grid(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64), out)
    assert grid.shape == (3, 2 * 64, 7 * 64) and grid.min() >= 0 and grid.max() <= 1


def test_cli_reports_config_errors_in_one_line(clips, tmp_path, capsys):
    assert main(["--config", str(TINY), "--out", str(tmp_path), "--set", "train.lr=fast"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "train.lr" in err[-1]
    assert main(["--config", str(TINY), "--out", str(tmp_path), "--set", "data.root="]) == 1
    assert "data.root" in capsys.readouterr().err


def test_export_writes_a_loadable_fp16_generator_of_the_chosen_step(clips, tmp_path):
    from training.export import export, main

    config = tiny(clips, max_steps=2, checkpoint_every=1, keep_checkpoints=3)
    training_loop(config, tmp_path / "run")
    used, diff = export(tmp_path / "run", tmp_path / "fp16", step=1)
    assert used.name == "step-0000001"
    stored = tensors(tmp_path / "fp16" / "model.safetensors")
    assert {t.dtype for t in stored.values() if t.is_floating_point()} == {torch.float16}
    step1 = tensors(used / "generator.safetensors")
    assert all(torch.equal(stored[k], step1[k].half()) for k in step1)  # exactly the weights of step 1
    assert 0 < diff < 1e-2  # fp16 rounding changes the output a little, not a lot
    assert INTERNet.from_pretrained(tmp_path / "fp16").config == config.model
    assert main(["--run", str(tmp_path / "run"), "--out", str(tmp_path / "missing"), "--step", "9"]) == 2


def test_learning_rate_drops_at_each_milestone():
    from training.train import learning_rate

    rates = [learning_rate(2e-4, step, (10, 20), 0.1) for step in (0, 9, 10, 19, 20, 1000)]
    assert rates == pytest.approx([2e-4, 2e-4, 2e-5, 2e-5, 2e-6, 2e-6])
    assert learning_rate(1.0, 50, (), 0.1) == 1.0


def test_warm_start_loads_every_saved_tensor_and_keeps_new_modules_at_their_initialisation(clips, tmp_path):
    config = tiny(clips, max_steps=1, checkpoint_every=100)
    result = training_loop(config, tmp_path / "first")
    saved = tensors(result.checkpoint / "generator.safetensors")
    grown = replace(config, model={"motion": {"background": "affine"}})
    fresh = _fresh_trainables(grown)
    kept = warm_start(result.checkpoint, fresh)
    assert kept and all(k.startswith("generator.background.") for k in kept)
    state = fresh.generator.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items())
    exported = _fresh_trainables(grown)
    assert warm_start(result.final_dir, exported) == [k for k in kept if k.startswith("generator.")] + ["discriminator"]
    # A run started from it begins where the first one ended (train.init), and files of another model are refused.
    run = training_loop(replace(grown, train={"init": str(result.checkpoint), "max_steps": 1}), tmp_path / "b")
    assert run.progress.step == 1
    other = _fresh_trainables(replace(config, model={"anchors": {"num_anchors": 5}}))
    with pytest.raises(CheckpointError, match="does not fit"):
        warm_start(result.checkpoint, other)
    with pytest.raises(CheckpointError, match="neither"):
        warm_start(tmp_path, other)


def test_the_affine_background_term_learns_at_its_own_rate_and_follows_the_milestones(clips, tmp_path):
    config = tiny(clips, max_steps=2, checkpoint_every=100, lr=2e-4, lr_background=1e-3, lr_milestones=(1,))
    config = replace(config, model={"motion": {"background": "affine"}})
    result = training_loop(config, tmp_path / "run")
    groups = result.trainables.generator_optimizer.param_groups
    background = {id(p) for p in result.trainables.generator.background.parameters()}
    assert [len(g["params"]) for g in groups] == [
        sum(1 for p in result.trainables.generator.parameters() if id(p) not in background), len(background)
    ]
    assert [g["lr"] for g in groups] == pytest.approx([2e-5, 1e-4])  # after the milestone at step 1
    # It moved off the identity it started at.
    assert result.trainables.generator.background.detector.heatmap.weight.abs().sum() > 0
