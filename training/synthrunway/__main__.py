"""``python -m training.synthrunway``: write SynthRunway clips (see :mod:`training.synthrunway.clips`)."""

from training.synthrunway.clips import main

raise SystemExit(main())
