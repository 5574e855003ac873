"""Motion sources behind one interface (:class:`~internet.sources.base.MotionSource`): the INTERNet model
(:mod:`internet.sources.model`) and the training-free pose rig (:mod:`internet.sources.rig`, built on
:mod:`internet.sources.poserig`). Both return a :class:`~internet.sources.frames.FrameMotion` per frame;
:mod:`internet.sources.landmarks` holds the shared pose type and MediaPipe."""
