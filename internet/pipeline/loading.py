"""Which checkpoint the pipeline loads, checked before anything is allocated."""

from __future__ import annotations

import os
from pathlib import Path

from internet.errors import InputError

CHECKPOINTS = Path(__file__).resolve().parents[2] / "assets" / "checkpoints"


def default_checkpoint() -> Path | None:
    """The committed SynthRunway checkpoint (``assets/checkpoints/*/model.safetensors``), if any."""
    found = sorted(p.parent for p in CHECKPOINTS.glob("*/model.safetensors") if (p.parent / "config.json").is_file())
    preferred = [p for p in found if "synthrunway" in p.name]
    return (preferred or found or [None])[-1]


def load_checkpoint(checkpoint: str | os.PathLike, device: str = "cpu"):
    """The INTERNet model of a checkpoint folder (``"default"``: the committed one); bad ones raise InputError."""
    from internet.checkpoint import check_weights_fit, read_config
    from internet.errors import CheckpointError
    from internet.model import INTERNet

    path = default_checkpoint() if str(checkpoint) == "default" else Path(checkpoint)
    if path is None:
        raise InputError("No model checkpoint is committed yet: pass --checkpoint DIR or use --motion pose-rig")
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise InputError(f"{path} is not a checkpoint folder (needs model.safetensors and config.json)")
    try:  # names and shapes first, on the meta device: an absurd config.json must not allocate anything
        check_weights_fit(read_config(path / "config.json"), path / "model.safetensors", INTERNet)
        return INTERNet.from_pretrained(path, device=device)
    except CheckpointError as error:
        raise InputError(str(error)) from None
