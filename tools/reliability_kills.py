"""kill -9 a ``torchrun --nproc_per_node 2`` CPU training run again and again; ``--resume`` ends bit-exact.

    python tools/reliability_kills.py --kills 10 --steps 16 --json kills.json

A reference run trains ``--steps`` steps without interruption. The victim run is launched, killed with
SIGKILL (the torchrun agent and both workers at once, as a lost node or the OOM killer would) at a random
moment, relaunched with ``--resume``, killed again, ... ``--kills`` times, then left to finish. Every kill
lands either in a step or, on purpose, in the middle of a checkpoint write (the moment a ``.tmp-step-*``
folder appears). Survived = the final generator, discriminator and optimizer tensors equal the reference's
bit for bit. ``tests/test_kill_resume.py`` runs the same code with 3 kills.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: python tools/reliability_kills.py
    sys.path.insert(0, str(ROOT))
TINY = ROOT / "training" / "configs" / "tiny.yaml"


@dataclass
class Kill:
    """One SIGKILL: when it was sent, what it interrupted, and which checkpoint survived it."""

    attempt: int
    target: str  # "step" (a random moment) or "checkpoint" (as soon as a checkpoint write starts)
    landed: str  # "checkpoint write" when a .tmp-step-* folder was left behind, else "step"
    seconds_after_launch: float
    last_complete_step: int  # newest complete checkpoint after the kill (0: none yet)


@dataclass
class KillReport:
    """What ``kill_and_resume`` did and whether the result equals an uninterrupted run."""

    steps: int
    nproc: int
    kills: list[Kill] = field(default_factory=list)
    launches: int = 0
    identical: bool = False
    tensors_compared: int = 0
    differing: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def survived(self) -> int:
        """Kills after which the run still ended bit-identical to the reference (all or none)."""
        return len(self.kills) if self.identical else 0


def train_command(out: Path, clips: Path, steps: int, nproc: int, resume: bool) -> list[str]:
    """The ``torchrun`` command line for the tiny config, one checkpoint per step."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    cmd += ["-m", "training.train", "--config", str(TINY), "--out", str(out), "--max-steps", str(steps)]
    for item in (f"data.root={clips}", f"train.batch_size={nproc}", "train.checkpoint_every=1",
                 "train.keep_checkpoints=2", "train.image_every=0", "train.log_every=1"):  # fmt: skip
        cmd += ["--set", item]
    return cmd + (["--resume"] if resume else [])


def environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def launch(cmd: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as sink:
        return subprocess.Popen(cmd, cwd=ROOT, env=environment(), stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (torchrun starts its workers in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_all(proc: subprocess.Popen) -> None:
    """SIGKILL the agent and every worker at once, reap the agent, and wait until no worker is left.

    Killing the agent alone is not enough: its workers live on as orphans, training and checkpointing."""
    pids = [*descendants(proc.pid), proc.pid]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while (alive := [pid for pid in pids if _running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.01)
    if alive:
        raise RuntimeError(f"processes {alive} survived SIGKILL")


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def complete_steps(out: Path) -> list[int]:
    """Steps of the complete checkpoints (``step-*`` folders with state.json), oldest first."""
    root = out / "checkpoints"
    if not root.is_dir():
        return []
    names = [p for p in root.iterdir() if p.name.startswith("step-") and (p / "state.json").is_file()]
    return sorted(int(p.name.split("-")[1]) for p in names)


def _saving(out: Path) -> bool:
    root = out / "checkpoints"
    try:
        return any(name.startswith(".tmp-step-") and not name.endswith("-old") for name in os.listdir(root))
    except OSError:
        return False


def run_reference(out: Path, clips: Path, steps: int, nproc: int = 2, timeout: float = 600) -> None:
    """An uninterrupted run of ``steps`` steps."""
    proc = launch(train_command(out, clips, steps, nproc, resume=False), out.with_suffix(".log"))
    if proc.wait(timeout=timeout) != 0:
        raise RuntimeError(f"the reference run failed; see {out.with_suffix('.log')}")


def kill_and_resume(
    out: Path, clips: Path, steps: int, kills: int, seed: int = 0, nproc: int = 2, timeout: float = 600
) -> KillReport:
    """Launch, kill -9 at a random point after some progress, relaunch with --resume; ``kills`` times."""
    rng = random.Random(seed)
    report = KillReport(steps=steps, nproc=nproc)
    log = out.with_suffix(".log")
    start = time.monotonic()
    for attempt in range(kills):
        before = max(complete_steps(out), default=0)
        if before >= steps - 1:
            break  # too close to the end to interrupt again
        target = "checkpoint" if attempt % 2 else "step"
        proc = launch(train_command(out, clips, steps, nproc, resume=attempt > 0), log)
        report.launches += 1
        launched = time.monotonic()
        # Wait for progress (a checkpoint newer than the one we resumed from), so every round moves on.
        while max(complete_steps(out), default=0) <= before and proc.poll() is None:
            if time.monotonic() - launched > timeout:
                kill_all(proc)
                raise TimeoutError(f"no progress within {timeout} s; see {log}")
            time.sleep(0.01)
        if proc.poll() is not None:
            raise RuntimeError(f"the run ended (code {proc.returncode}) before kill {attempt + 1}; see {log}")
        if target == "checkpoint":
            deadline = time.monotonic() + 30
            while not _saving(out) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.0005)  # a tiny checkpoint is written in milliseconds
        else:
            time.sleep(rng.uniform(0.0, 0.5))
        if proc.poll() is not None:
            break  # it finished in the meantime: nothing left to kill
        kill_all(proc)
        landed = "checkpoint write" if _saving(out) else "step"
        seconds = round(time.monotonic() - launched, 3)
        report.kills.append(Kill(attempt + 1, target, landed, seconds, max(complete_steps(out), default=0)))
    proc = launch(train_command(out, clips, steps, nproc, resume=True), log)
    report.launches += 1
    if proc.wait(timeout=timeout) != 0:
        raise RuntimeError(f"the resumed run failed; see {log}")
    report.seconds = round(time.monotonic() - start, 1)
    return report


def final_tensors(out: Path, step: int) -> dict:
    """Generator, discriminator and optimizer tensors of the checkpoint at ``step``."""
    from safetensors.torch import load_file

    folder = out / "checkpoints" / f"step-{step:07d}"
    tensors = {}
    for name in ("generator", "discriminator", "optimizers"):
        tensors.update({f"{name}/{k}": v for k, v in load_file(str(folder / f"{name}.safetensors")).items()})
    return tensors


def compare(report: KillReport, reference: Path, victim: Path) -> KillReport:
    """Fill ``identical``/``differing`` from the two runs' final checkpoints."""
    import torch

    a, b = final_tensors(reference, report.steps), final_tensors(victim, report.steps)
    report.tensors_compared = len(a)
    report.differing = sorted(set(a) ^ set(b)) + [k for k in a if k in b and not torch.equal(a[k], b[k])]
    report.identical = not report.differing
    return report


def make_clips(folder: Path, clips: int = 4) -> Path:
    from training.synthrunway import generate

    generate(folder, clips=clips, frames=6, size=64, seed=0, progress=False)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    args = parser.parse_args(argv)

    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        clips = make_clips(work / "clips")
        run_reference(work / "reference", clips, args.steps)
        report = kill_and_resume(work / "killed", clips, args.steps, args.kills, args.seed)
        compare(report, work / "reference", work / "killed")
    for k in report.kills:
        print(f"kill {k.attempt:2d}: aimed at a {k.target:10s} landed in a {k.landed:16s}"
              f" {k.seconds_after_launch:6.2f} s after launch, resumed from step {k.last_complete_step}")
    verdict = "identical" if report.identical else f"DIFFERENT ({len(report.differing)} tensors)"
    print(f"{len(report.kills)} kills, {report.launches} launches, {report.seconds:.0f} s; final weights at"
          f" step {report.steps} vs the uninterrupted run: {verdict} ({report.tensors_compared} tensors)")
    if args.json:
        args.json.write_text(json.dumps({**asdict(report), "survived": report.survived}, indent=2))
    return 0 if report.identical else 1


if __name__ == "__main__":
    sys.exit(main())
