"""Does the background term follow the camera? T_0 against SynthRunway's exact background map.

``python -m training.camera --checkpoint DIR --data CLIPS [--frames 48] [--json out.json]``

SynthRunway's camera pans and zooms: the background of frame t is an affine image of the background texture,
so the map from a pixel of driving frame t to the source frame 0 is one exact affine map, known from the clip's
seed and index (the scene is rebuilt). The score is the mean end-point error, in pixels, of the model's
background term T_0 (``MotionConfig.background``; the identity in the paper) against that map over every
pixel of the frame, beside the error of the identity itself (= how far the camera moved).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from internet.geometry import affine_grid, identity_grid
from internet.model import INTERNet
from training.confidence import clip_score_parser, reenacted, score_clips
from training.data import load_clip
from training.synthrunway.figure import sample_scene


def background_maps(folder: Path, frames: int) -> np.ndarray:
    """(T, 2, 3): the exact affine map from frame t's pixels to frame 0's (pixels, x then y); t = 0 is I."""
    meta = load_clip(folder).meta
    scene = sample_scene(np.random.default_rng([meta.seed, meta.index]), meta.num_frames, meta.fps, meta.size)

    def placed(t: int) -> np.ndarray:  # texture -> screen of frame t, 3x3
        return np.vstack([scene.layout(t)[0].affines[0], [0.0, 0.0, 1.0]])

    first = placed(0)
    return np.stack([(first @ np.linalg.inv(placed(t)))[:2] for t in range(frames)])


def to_normalized(pixel_map: np.ndarray, size: int) -> torch.Tensor:
    """A pixel affine map (..., 2, 3) as the same map of normalised coordinates (align_corners=True)."""
    k = (size - 1) / 2  # x_pixel = k (x_norm + 1)
    a = torch.as_tensor(pixel_map, dtype=torch.float32)
    shift = (a[..., :2].sum(-1) * k + a[..., 2] - k) / k
    return torch.cat([a[..., :2], shift[..., None]], dim=-1)


@dataclass
class CameraScore:
    """Mean end-point error (pixels at the model's size) of T_0 and of the identity against the exact map."""

    clip: str
    background_error_px: float
    identity_error_px: float


@torch.no_grad()
def camera_score(model: INTERNet, folder: Path, frames: int = 48) -> CameraScore:
    """Self-reenact the clip (source = frame 0) and compare T_0 of every frame with the exact map."""
    clip, outputs = reenacted(model, folder, frames)
    size = model.config.image_size
    n = sum(len(out.prediction) for out in outputs)
    predicted = [out.background for out in outputs]
    exact = to_normalized(background_maps(folder, n), clip.meta.size)  # normalised maps do not depend on size
    truth = affine_grid(exact, size, size)
    theta = torch.cat(predicted) if predicted[0] is not None else None
    found = affine_grid(theta, size, size) if theta is not None else identity_grid(size, size).expand_as(truth)
    scale = (size - 1) / 2
    error = ((found - truth).norm(dim=-1) * scale)[1:].mean()
    moved = ((identity_grid(size, size) - truth).norm(dim=-1) * scale)[1:].mean()
    return CameraScore(clip=clip.name, background_error_px=float(error), identity_error_px=float(moved))


def main(argv: list[str] | None = None) -> int:
    args = clip_score_parser("python -m training.camera", __doc__.split("\n\n")[0]).parse_args(argv)
    scores = score_clips(args, camera_score)
    if scores is None:
        return 2
    for s in scores:
        print(f"{s.clip}: T_0 off by {s.background_error_px:.3f} px, the identity by {s.identity_error_px:.3f} px")
    mean = {k: float(np.mean([getattr(s, k) for s in scores])) for k in ("background_error_px", "identity_error_px")}
    print(f"mean over {len(scores)} clips: T_0 {mean['background_error_px']:.3f} px, "
          f"identity {mean['identity_error_px']:.3f} px")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({**mean, "clips": [asdict(s) for s in scores]}, indent=1) + "\n",
                                   encoding="utf-8")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
