"""Test-session setup shared by every test file."""

from __future__ import annotations

import os

import torch

# Subprocesses (CLI runs, torchrun, killed training runs) inherit the parent's thread count, so results that
# tests compare across processes use the same float reduction order.
os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
