"""The Table 2 ablation: train SS4x-a/b/c and MS-b/c with identical data, steps and seeds, then evaluate.

    python -m training.ablation --config training/configs/ablation-synthrunway.yaml [--steps N] [--resume]
    python -m training.ablation --config ... --skip-train        # only evaluate and write the table

Variants are trained round-robin, ``round_steps`` optimizer steps at a time, each in ``OUT/<variant>/``
(``training.train`` checkpoints, so ``--resume`` continues an interrupted or extended run exactly); at
every round boundary all variants have taken the same number of steps. Each trained generator
(``OUT/<variant>/final``) is then evaluated with ``training.evaluate`` on the held-out test clips, and
``OUT/results.json`` plus ``OUT/table.md`` (the layout of Table 2, mean ± 95% CI) are written.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from internet.config import PRESETS
from internet.errors import CheckpointError, ConfigError, InputError
from training.checkpointing import latest_checkpoint
from training.config import ExperimentConfig, load_experiment, read_mapping

log = logging.getLogger("training.ablation")

SCHEMES = {"none": "a", "extrinsic": "b", "intrinsic": "c"}
TABLE_METRICS = (  # (key, header, higher is better)
    ("l1", "L1 ↓", False),
    ("psnr", "PSNR ↑", True),
    ("ms_ssim", "MS-SSIM ↑", True),
    ("lpips", "LPIPS ↓", False),
    ("fid", "FID ↓", False),
    ("warp_error", "E_warp ×10³ ↓", False),
    ("interp_psnr", "Interp-PSNR* ↑", True),
)


@dataclass(frozen=True)
class Variant:
    """One row of Table 2: generator skips (a model preset) and the temporal scheme."""

    name: str
    preset: str
    temporal: str


@dataclass(frozen=True)
class AblationConfig:
    base: Path  # training config every variant starts from
    out: Path
    test_data: Path
    eval_frames: int
    steps: int
    round_steps: int
    overrides: tuple[str, ...]
    variants: tuple[Variant, ...]


def load_ablation(path: str | Path) -> AblationConfig:
    """Read and validate an ablation YAML (see ``training/configs/ablation-synthrunway.yaml``)."""
    raw = read_mapping(path)
    allowed = {"base", "out", "test_data", "eval_frames", "steps", "round_steps", "overrides", "variants"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    variants = []
    for name, spec in (raw.get("variants") or {}).items():
        if not isinstance(spec, dict) or set(spec) != {"preset", "temporal"}:
            raise ConfigError(f"{path}: variant {name} needs exactly 'preset' and 'temporal'")
        if spec["preset"] not in PRESETS:
            raise ConfigError(f"{path}: variant {name}: unknown preset {spec['preset']!r}")
        if spec["temporal"] not in SCHEMES:
            raise ConfigError(f"{path}: variant {name}: temporal must be one of {', '.join(SCHEMES)}")
        variants.append(Variant(str(name), spec["preset"], spec["temporal"]))
    if not variants:
        raise ConfigError(f"{path}: no variants")
    try:
        config = AblationConfig(
            base=Path(raw["base"]),
            out=Path(raw.get("out", "runs/ablation")),
            test_data=Path(raw["test_data"]),
            eval_frames=int(raw.get("eval_frames", 0)),
            steps=int(raw["steps"]),
            round_steps=int(raw.get("round_steps", raw["steps"])),
            overrides=tuple(str(o) for o in raw.get("overrides") or ()),
            variants=tuple(variants),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: missing or bad key: {exc}") from None
    if config.steps < 1 or config.round_steps < 1:
        raise ConfigError(f"{path}: steps and round_steps must be >= 1")
    return config


def variant_experiment(config: AblationConfig, variant: Variant, max_steps: int) -> ExperimentConfig:
    """The training config of one variant: base file + shared overrides + (preset, scheme, steps)."""
    overrides = [
        *config.overrides,
        f"model.preset={variant.preset}",
        f"loss.temporal={variant.temporal}",
        f"train.max_steps={max_steps}",
    ]
    return load_experiment(config.base, overrides)


def steps_done(run_dir: Path) -> int:
    """Optimizer steps of the last complete checkpoint in a run folder (0 when none)."""
    found = latest_checkpoint(run_dir / "checkpoints")
    return 0 if found is None else int(found.name.split("-")[1])


def train_variants(config: AblationConfig, steps: int, resume: bool) -> None:
    """Round-robin training: every variant reaches round_steps, 2 round_steps, ... up to ``steps``."""
    from training.train import training_loop  # heavy import, only when training

    if not resume:
        started = [v.name for v in config.variants if steps_done(config.out / v.name) > 0]
        if started:
            raise ConfigError(f"{config.out} already holds runs ({', '.join(started)}): pass --resume")
    targets = list(range(config.round_steps, steps, config.round_steps)) + [steps]
    for target in targets:
        for variant in config.variants:
            run = config.out / variant.name
            if steps_done(run) >= target:
                continue
            t0 = time.perf_counter()
            training_loop(variant_experiment(config, variant, target), run, resume=True)
            _add_wall_time(run, time.perf_counter() - t0, target)
        log.info("round done: every variant at %d steps", target)


def _add_wall_time(run: Path, seconds: float, step: int) -> None:
    """Accumulate training wall time (all rounds, all resumes) in ``run/wall_time.json``."""
    file = run / "wall_time.json"
    data = json.loads(file.read_text()) if file.is_file() else {"seconds": 0.0}
    data["seconds"] = float(data["seconds"]) + seconds
    data["steps"] = step
    file.write_text(json.dumps(data, indent=2) + "\n")


def evaluate_variants(config: AblationConfig, device: str = "cpu") -> dict[str, Any]:
    """Evaluate every trained variant on the test clips; returns the results mapping (also written)."""
    from training.evaluate import evaluate_checkpoint, report_to_dict

    results: dict[str, Any] = {"variants": {}, "test_data": str(config.test_data)}
    baselines = None
    for variant in config.variants:
        run = config.out / variant.name
        if not (run / "final" / "config.json").is_file():
            raise InputError(f"{run}/final does not exist: train {variant.name} first")
        report = evaluate_checkpoint(
            run / "final", config.test_data, device=device, max_frames=config.eval_frames,
            baselines=baselines is None,
        )  # fmt: skip
        entry = report_to_dict(report)
        wall = run / "wall_time.json"
        entry["training"] = json.loads(wall.read_text()) if wall.is_file() else None
        entry["preset"], entry["temporal"] = variant.preset, variant.temporal
        results["variants"][variant.name] = entry
        if baselines is None:  # the reference rows do not depend on the model: computed once
            baselines = {k: {"overall": entry["baselines"][k], "overall_ci95": entry["baselines_ci95"][k]}
                         for k in entry["baselines"]}  # fmt: skip
    results["baselines"] = baselines
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (config.out / "table.md").write_text(markdown_table(results) + "\n\n" + paired_table(results) + "\n")
    return results


def _cell(row: dict[str, Any], key: str) -> str:
    value, ci = row["overall"].get(key), row["overall_ci95"].get(key)
    if value is None:
        return "n/c"
    scale = 1000.0 if key == "warp_error" else 1.0
    digits = 4 if key in ("l1", "ms_ssim") else 2
    return f"{value * scale:.{digits}f} ± {ci * scale:.{digits}f}"


def markdown_table(results: dict[str, Any]) -> str:
    """Table 2 layout: one row per variant (+ the two reference rows), best variant value in bold."""
    names = list(results["variants"])
    header = "| Variant | skips | L_reg | " + " | ".join(h for _, h, _ in TABLE_METRICS) + " |"
    lines = [header, "|" + "---|" * (3 + len(TABLE_METRICS))]
    best: dict[str, str] = {}
    for key, _, higher in TABLE_METRICS:
        scored = [(results["variants"][n]["overall"].get(key), n) for n in names]
        scored = [(v, n) for v, n in scored if v is not None]
        if scored:
            best[key] = (max if higher else min)(scored)[1]
    for name in names:
        row = results["variants"][name]
        skips = "MS" if PRESETS[row["preset"]]().generator.skip_mode == "multiscale" else "SS4x"
        cells = []
        for key, _, _ in TABLE_METRICS:
            cell = _cell(row, key)
            cells.append(f"**{cell}**" if best.get(key) == name else cell)
        lines.append(f"| {name} | {skips} | ({SCHEMES[row['temporal']]}) | " + " | ".join(cells) + " |")
    for label, key in (("static source", "static_source"), ("ground truth", "ground_truth")):
        row = results["baselines"][key]
        lines.append(f"| *{label}* | – | – | " + " | ".join(_cell(row, k) for k, _, _ in TABLE_METRICS) + " |")
    return "\n".join(lines)


PAIRED_METRICS = (("l1", "ΔL1", False), ("psnr", "ΔPSNR (dB)", True), ("ms_ssim", "ΔMS-SSIM", True),
                  ("warp_error", "ΔE_warp ×10³", False), ("interp_psnr", "ΔInterp-PSNR* (dB)", True))  # fmt: skip
# The paper's orderings, each as (better, worse): schemes within SS4x and MS, then MS against SS4x.
COMPARISONS = (("SS4x-b", "SS4x-a"), ("SS4x-c", "SS4x-a"), ("SS4x-c", "SS4x-b"), ("MS-c", "MS-b"),
               ("MS-b", "SS4x-b"), ("MS-c", "SS4x-c"))  # fmt: skip


def _per_clip(results: dict[str, Any], name: str, key: str) -> dict[str, float]:
    """{clip: value} of one variant, or of the static-source row for ``name == "static source"``."""
    if name == "static source":
        clips = next(iter(results["variants"].values()))["clips"]
        return {c["name"]: c["static_source"][key] for c in clips if c.get("static_source")}
    return {c["name"]: c["model"][key] for c in results["variants"][name]["clips"]}


def paired_difference(results: dict[str, Any], a: str, b: str, key: str, higher: bool) -> tuple[float, float, int, int]:
    """Mean of a - b over the clips both were scored on, its 95% CI half-width, and in how many of the n
    clips a is the better of the two (by the metric's direction)."""
    from training.metrics import mean_ci95

    va, vb = _per_clip(results, a, key), _per_clip(results, b, key)
    diffs = [va[c] - vb[c] for c in va if c in vb and va[c] is not None and vb[c] is not None]
    mean, ci = mean_ci95(diffs)
    wins = sum((d > 0) == higher and d != 0 for d in diffs)
    return mean, ci, wins, len(diffs)


def paired_table(results: dict[str, Any]) -> str:
    """The paper's orderings as paired differences over the same test clips (mean ± 95% CI, and the number
    of clips where the first variant is better), plus every variant against the static source."""
    names = set(results["variants"])
    pairs = [(a, b) for a, b in COMPARISONS if a in names and b in names]
    pairs += [(n, "static source") for n in results["variants"]]
    lines = ["| comparison | " + " | ".join(h for _, h, _ in PAIRED_METRICS) + " |",
             "|---|" + "---|" * len(PAIRED_METRICS)]  # fmt: skip
    for a, b in pairs:
        cells = []
        for key, _, higher in PAIRED_METRICS:
            mean, ci, wins, n = paired_difference(results, a, b, key, higher)
            scale = 1000.0 if key == "warp_error" else 1.0
            digits = 4 if key in ("l1", "ms_ssim") else 2
            significant = abs(mean) > ci and n > 1
            cell = f"{mean * scale:+.{digits}f} ± {ci * scale:.{digits}f} ({wins}/{n})"
            cells.append(f"**{cell}**" if significant else cell)
        lines.append(f"| {a} − {b} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.ablation", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="ablation YAML, e.g. training/configs/ablation-synthrunway.yaml")
    p.add_argument("--steps", type=int, help="optimizer steps per variant (overrides the config's 'steps')")
    p.add_argument("--resume", action="store_true", help="continue the variants' runs from their checkpoints")
    p.add_argument("--skip-train", action="store_true", help="only evaluate the trained variants")
    p.add_argument("--skip-eval", action="store_true", help="only train")
    p.add_argument("--device", default="cpu", help="evaluation device (training uses train.device)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)
    try:
        config = load_ablation(args.config)
        if not args.skip_train:
            train_variants(config, args.steps or config.steps, args.resume)
        if not args.skip_eval:
            results = evaluate_variants(config, args.device)
            print(markdown_table(results))
            print()
            print(paired_table(results))
    except (ConfigError, CheckpointError, InputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
