"""Export a trained generator for inference.

    python -m training.export --run DIR --out DIR [--step N] [--dtype fp16]

Takes the generator of a training run's checkpoint (the latest complete one, or ``--step N``) and writes a
``from_pretrained`` folder (``model.safetensors`` + ``config.json``), by default in float16 to halve the
file (weights are upcast to float32 on load). The export is checked by loading it back and comparing its
output with the float32 weights' on a fixed pair of frames; the difference is printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import yaml

from internet.checkpoint import load_state_dict
from internet.config import ModelConfig, from_dict
from internet.errors import CheckpointError, ConfigError
from internet.model import INTERNet
from training.checkpointing import latest_checkpoint, list_checkpoints

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def run_checkpoint(run: Path, step: int | None = None) -> Path:
    """The checkpoint folder of ``run`` at ``step`` (default: the latest complete one)."""
    root = run / "checkpoints"
    if step is None:
        found = latest_checkpoint(root)
    else:
        found = next((p for p in list_checkpoints(root) if p.name == f"step-{step:07d}"), None)
    if found is None:
        raise CheckpointError(f"no {'complete checkpoint' if step is None else f'checkpoint at step {step}'} in {root}")
    return found


def load_generator(run: Path, checkpoint: Path) -> INTERNet:
    """The generator of ``checkpoint`` (its EMA when the run kept one, as ``final/`` does), built from the model
    section of ``run/config.yaml``."""
    config_path = run / "config.yaml"
    if not config_path.is_file():
        raise ConfigError(f"missing {config_path} (written by training.train at the start of the run)")
    model = INTERNet(from_dict(ModelConfig, yaml.safe_load(config_path.read_text())["model"], str(config_path)))
    ema = checkpoint / "generator_ema.safetensors"
    load_state_dict(model, ema if ema.is_file() else checkpoint / "generator.safetensors")
    return model.eval()


def export(run: Path, out: Path, step: int | None = None, dtype: str = "fp16") -> tuple[Path, float]:
    """Write the export; returns (the checkpoint used, max abs output difference of the export vs float32)."""
    checkpoint = run_checkpoint(run, step)
    model = load_generator(run, checkpoint)
    model.save_pretrained(out, dtype=DTYPES[dtype])
    reloaded = INTERNet.from_pretrained(out)
    size = model.config.image_size
    g = torch.Generator().manual_seed(0)
    source, driving = torch.rand(2, 1, 3, size, size, generator=g)
    with torch.inference_mode():
        diff = (model(source, driving).prediction - reloaded(source, driving).prediction).abs().max().item()
    return checkpoint, diff


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.export", description="Export a trained generator.")
    p.add_argument("--run", type=Path, required=True, help="training output folder (holds checkpoints/, config.yaml)")
    p.add_argument("--out", type=Path, required=True, help="folder to write model.safetensors + config.json into")
    p.add_argument("--step", type=int, help="checkpoint step (default: the latest complete checkpoint)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp16", help="stored weight type (default fp16)")
    args = p.parse_args(argv)
    try:
        checkpoint, diff = export(args.run, args.out, args.step, args.dtype)
    except (CheckpointError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"exported {checkpoint} -> {args.out} ({args.dtype}); max |output difference| vs float32: {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
