"""``torchrun --nproc_per_node 2`` with gloo on CPU: two DDP steps leave identical weights on both ranks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from safetensors.torch import load_file

from training.synthrunway import generate

ROOT = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import torch.distributed as dist
    from safetensors.torch import save_file

    from training import distributed
    from training.config import load_experiment, replace
    from training.data import SynthRunwayDataset
    from training.distributed import ResumableSampler
    from training.train import training_loop

    clips, out = Path(sys.argv[1]), Path(sys.argv[2])
    config = load_experiment(Path(sys.argv[3]), [f"data.root={clips}"])
    config = replace(config, train={"batch_size": 2, "max_steps": 2, "checkpoint_every": 1, "image_every": 0})
    result = training_loop(config, out / "run")
    rank = dist.get_rank()
    for name, module in result.trainables.modules():
        state = {k: v.contiguous() for k, v in module.state_dict().items()}
        save_file(state, str(out / f"{name}-rank{rank}.st"))
    sampler = ResumableSampler(SynthRunwayDataset(clips), 2, rank, seed=config.train.seed, batch_size=1)
    sampler.set_position(0, 0)
    (out / f"indices-rank{rank}.txt").write_text(" ".join(map(str, sampler)))
    distributed.shutdown()
    """
)


def test_torchrun_two_ranks_with_gloo_hold_identical_weights(tmp_path):
    clips = tmp_path / "clips"
    generate(clips, clips=4, frames=6, size=64, seed=0, progress=False)
    (tmp_path / "worker.py").write_text(WORKER)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(tmp_path / "worker.py"), str(clips), str(tmp_path), str(ROOT / "training/configs/tiny.yaml"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]

    for name in ("generator", "discriminator"):
        rank0 = load_file(str(tmp_path / f"{name}-rank0.st"))
        rank1 = load_file(str(tmp_path / f"{name}-rank1.st"))
        assert rank0.keys() == rank1.keys()
        assert all(torch.equal(rank0[k], rank1[k]) for k in rank0), f"{name} weights differ between ranks"
    # The ranks saw different samples, so agreeing weights mean the gradients were averaged.
    shards = [set((tmp_path / f"indices-rank{r}.txt").read_text().split()) for r in (0, 1)]
    assert shards[0] and shards[1] and not shards[0] & shards[1]
    # They did train, and rank 0 checkpointed what both ranks hold.
    ckpts = tmp_path / "run" / "checkpoints"
    step1 = load_file(str(ckpts / "step-0000001" / "generator.safetensors"))
    step2 = load_file(str(ckpts / "step-0000002" / "generator.safetensors"))
    generator = load_file(str(tmp_path / "generator-rank1.st"))
    assert any(not torch.equal(step1[k], step2[k]) for k in step1)
    assert all(torch.equal(step2[k], generator[k]) for k in step2)
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "2 rank(s)" in log and "batch 2 (1 per rank)" in log
