"""SynthRunway: synthetic runway clips with exact optical flow, visibility, masks and joints.

- :mod:`~training.synthrunway.clips`: the clip format, the train/test split by seed and the generator
  (``python -m training.synthrunway``);
- :mod:`~training.synthrunway.figure`: a random figure, outfit and walk (the scene of one clip);
- :mod:`~training.synthrunway.render`: a scene at one time step to pixels, masks and the exact flow;
- :mod:`~training.synthrunway.textures`: procedural garment and backdrop textures;
- :mod:`~training.synthrunway.examples`: the app's example media (``python -m training.synthrunway.examples``).
"""

from training.synthrunway.clips import (
    DEFAULT_FPS,
    FORMAT,
    TEST_SEED_START,
    ClipSpec,
    clip_name,
    generate,
    generate_clip,
    main,
    split_of,
)

__all__ = [
    "DEFAULT_FPS", "FORMAT", "TEST_SEED_START", "ClipSpec", "clip_name", "generate", "generate_clip", "main",
    "split_of",
]  # fmt: skip
