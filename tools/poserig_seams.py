"""Tears at the pose rig's seams, measured on what the CLI draws.

For each driving clip the CLI runs in this process as a user runs it (``python -m internet.animate PHOTO CLIP -o
out.mp4``, 512², defaults), and every pose the pose rig is asked to draw is recorded. Each pose is then drawn
again over green and measured:

- ``tear``: green (background) pixels inside the union of the photo's parts, each part moved rigidly by its
  main bone and eroded by 2 px: where the figure should be whole but shows the background;
- ``loose``: figure pixels not connected to its largest piece (specks, streaks, rings drawn in the open).

``--stress`` adds poses that bend the photo's own skeleton far: elbows and knees folded up to 160 degrees, arms
raised, legs kicked, the torso narrowed (a turn). ``--before DIR`` measures a second checkout the same way (this
script imports its ``internet`` package in a subprocess) and ``--sheet`` writes a contact sheet: for each clip
the chosen frames (``--frames``, else the worst ones), the earlier code's row over this code's, on the photo's
own background as a user sees them.

    python tools/poserig_seams.py PHOTO --clips VIDEO|SYNTHRUNWAY_FOLDER ... [--stress] [--before DIR] [--sheet OUT.png]
        [--frames I J ...] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GREEN = np.array([0, 255, 0])


def _stress_cases() -> dict[str, dict]:
    """{name: {chain: degrees}}: a chain ``side_joint`` turns that joint's children about it (``narrow``: the
    torso's width times that factor)."""
    cases = {}
    for s, out in (("left", -1), ("right", 1)):
        for a in (-160, -130, -90, 90, 130, 160):
            cases[f"{s} elbow {a}"] = {f"{s}_elbow": a}
        for a in (100, 140):
            cases[f"{s} arm {out * a}"] = {f"{s}_shoulder": out * a}
        for a in (-160, -130, 130, 160):
            cases[f"{s} arm out, elbow {a}"] = {f"{s}_shoulder": out * 90, f"{s}_elbow": a}
        for a in (-90, 90):
            cases[f"{s} kick, knee {a}"] = {f"{s}_hip": out * 40, f"{s}_knee": a}
    for f in (0.5, 0.2):
        cases[f"torso narrowed to {f}"] = {"narrow": f}
    return cases


STRESS = _stress_cases()
CHILDREN = {"shoulder": ("elbow", "wrist"), "elbow": ("wrist",), "hip": ("knee", "ankle"), "knee": ("ankle",)}


def _stress_pose(points: np.ndarray, moves: dict) -> np.ndarray:
    from internet.skeleton import JOINT

    out = np.asarray(points, np.float64).copy()
    for chain, value in moves.items():
        if chain == "narrow":  # shoulders and hips (and what hangs from them) towards the centre line
            for side in ("left", "right"):
                for root in ("shoulder", "hip"):
                    pair = [JOINT[f"left_{root}"], JOINT[f"right_{root}"]]
                    shift = (out[JOINT[f"{side}_{root}"]] - out[pair].mean(axis=0)) * (value - 1)
                    for name in (root, *CHILDREN[root]):
                        out[JOINT[f"{side}_{name}"]] += shift
            continue
        side, joint = chain.split("_")
        t = np.deg2rad(value)
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        pivot = out[JOINT[chain]].copy()
        for child in CHILDREN[joint]:
            out[JOINT[f"{side}_{child}"]] = pivot + rot @ (out[JOINT[f"{side}_{child}"]] - pivot)
    return out.astype(np.float32)


def record(photo: Path, clip: Path) -> tuple[object, np.ndarray]:
    """Run the CLI on ``photo`` + ``clip``: (the pose rig it built, the (F, 13, 2) poses it drew)."""
    from internet.animate import main
    from internet.sources.poserig import rig as rig_module

    seen: dict = {"rig": None, "poses": []}
    draw = rig_module.PoseRig.render_pose

    def recording(self, pose, background="keep"):
        seen["rig"] = self
        seen["poses"].append(np.array(pose))
        return draw(self, pose, background)

    rig_module.PoseRig.render_pose = recording
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if main([str(photo), str(clip), "-o", str(Path(tmp) / "out.mp4")]) != 0:
                raise RuntimeError(f"the CLI failed on {clip}")
    finally:
        rig_module.PoseRig.render_pose = draw
    return seen["rig"], np.stack(seen["poses"])


def rigid_parts(rig, pose: np.ndarray) -> np.ndarray:
    """Where the photo's person lies in ``pose`` if each of its pixels moved rigidly with its main bone."""
    from internet.sources.poserig.retarget import bone_affines

    src, size = rig.source, rig.size
    affines = bone_affines(src.points, pose)
    bone = np.full((size, size), -1)
    for i, layer in enumerate(src.layers):
        weights = cv2.resize(layer.weights_low, (size, size), interpolation=cv2.INTER_NEAREST)
        here = src.labels == i
        bone[here] = np.argmax(weights[here], axis=-1)
    core = cv2.erode((src.labels >= 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    out = np.zeros((size, size), np.uint8)
    for b in range(len(affines)):
        out |= cv2.warpAffine(((bone == b) & core).astype(np.uint8), affines[b], (size, size), flags=cv2.INTER_NEAREST)
    return cv2.erode(out, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))).astype(bool)


def measure(rig, pose: np.ndarray) -> tuple[int, int]:
    """(tear, loose) pixels of ``pose`` drawn over green."""
    output, _ = rig.render_pose(pose, "green")
    background = np.abs(output.astype(np.int32) - GREEN).sum(axis=-1) < 150
    tear = int((background & rigid_parts(rig, pose)).sum())
    _, _, stats, _ = cv2.connectedComponentsWithStats((~background).astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    return tear, int(areas.sum() - areas.max()) if len(areas) else 0


def _summary(name: str, counts: np.ndarray) -> dict:
    tear, loose = counts[:, 0], counts[:, 1]
    worst = [int(i) for i in np.argsort(-tear, kind="stable")[:8]]
    return {"name": name, "frames": len(counts), "tear_px": int(tear.sum()), "tear_over_20": int((tear > 20).sum()),
            "tear_max": int(tear.max()), "worst": worst, "loose_px": int(loose.sum()),
            "frames_loose": int((loose > 0).sum())}  # fmt: skip


def _measured(name: str, rig, poses: list, picks: dict) -> tuple[dict, list]:
    """(the figures, [(frame, drawn on the photo's background)] for the sheet)."""
    counts = np.array([measure(rig, p) for p in poses])
    row = _summary(name, counts) | {"tear_per_frame": counts[:, 0].tolist()}
    chosen = picks.get(name) or sorted(row["worst"][:6])
    return row, [(i, rig.render_pose(poses[i], "keep")[0]) for i in chosen if i < len(poses)]


def _video(clip: Path) -> Path:
    """A driving video; a SynthRunway clip folder is written as one first (lossless, next to nothing else)."""
    if not clip.is_dir():
        return clip
    sys.path.insert(0, str(ROOT / "tools"))
    from poserig_eval import synthrunway_clip

    out = Path(tempfile.gettempdir()) / "poserig-seams"
    out.mkdir(exist_ok=True)
    return synthrunway_clip(clip, out)[0]


def run(args: argparse.Namespace, picks: dict) -> dict:
    """Every clip (and the stress poses) measured, with the frames for the sheet drawn: ``picks`` {name: frames},
    the worst frames where a name has none."""
    results, tiles, rig = [], {}, None
    for clip in args.clips:
        rig, poses = record(args.photo, clip)
        row, tiles[clip.name] = _measured(clip.name, rig, list(poses), picks)
        results.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "tear_per_frame"}), flush=True)
    if args.stress:
        poses = [_stress_pose(rig.source.points, moves) for moves in STRESS.values()]
        row, tiles["stress poses"] = _measured("stress poses", rig, poses, picks)
        results.append(row | {"per_pose": dict(zip(STRESS, row.pop("tear_per_frame")))})
        print(json.dumps(results[-1]), flush=True)
    return {"results": results, "tiles": tiles}


def _before(args: argparse.Namespace) -> dict:
    """The same measurement in a subprocess importing the earlier checkout's package (``--before``)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "before.npz"
        cmd = [sys.executable, __file__, str(args.photo), "--clips", *map(str, args.clips), "--code", str(args.before),
               "--dump", str(out)] + (["--stress"] if args.stress else []) + _frames_option(args)  # fmt: skip
        subprocess.run(cmd, check=True, cwd=args.before)
        data = np.load(out, allow_pickle=True)
        return {"results": list(data["results"]), "tiles": data["tiles"].item()}


def _frames_option(args: argparse.Namespace) -> list[str]:
    return ["--frames", *map(str, args.frames)] if args.frames else []


def _row(label: str, tiles: list, crop: int, tile: int) -> np.ndarray:
    cells = []
    for index, image in tiles:
        x0 = (image.shape[1] - crop) // 2
        part = image[20 : 20 + crop * 4 // 3, x0 : x0 + crop]
        cell = cv2.resize(part, (tile, tile * 4 // 3), interpolation=cv2.INTER_AREA)
        cv2.putText(cell, f"{label} {index}", (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        cells.append(cell)
    return np.concatenate(cells, axis=1)


def sheet(rows: list[tuple[str, dict]], path: Path, crop: int = 300, tile: int = 150) -> None:
    """One block per clip: a row of its chosen frames per code version, cropped around the figure; written with
    a 256-colour palette (a third of the bytes, no visible loss at this size)."""
    from PIL import Image

    blocks = [np.concatenate([_row(label, tiles[name], crop, tile) for label, tiles in rows]) for name in rows[0][1]]
    width = max(b.shape[1] for b in blocks)
    white = (255, 255, 255)
    blocks = [cv2.copyMakeBorder(b, 0, 4, 0, width - b.shape[1], cv2.BORDER_CONSTANT, value=white) for b in blocks]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(blocks)).quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photo", type=Path)
    parser.add_argument(
        "--clips", type=Path, nargs="+", required=True, help="driving videos or SynthRunway clip folders"
    )
    parser.add_argument("--stress", action="store_true", help="also the stress poses on the photo's skeleton")
    parser.add_argument("--before", type=Path, help="an earlier checkout to measure the same way (for the sheet)")
    parser.add_argument("--sheet", type=Path, help="contact sheet PNG (earlier code's rows over this code's)")
    parser.add_argument(
        "--blocks", nargs="*", help="what the sheet shows: clip file names, 'stress poses' (default: all)"
    )
    parser.add_argument("--frames", type=int, nargs="*", help="frames for the sheet, every clip (default: the worst)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--code", type=Path, help=argparse.SUPPRESS)  # the checkout whose package to import
    parser.add_argument("--dump", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str((args.code or ROOT).resolve()))
    if not args.code:  # (tools/poserig_eval imports this checkout's package: never in the --before subprocess)
        args.clips = [_video(c) for c in args.clips]
    names = [c.name for c in args.clips] + ["stress poses"]
    picks = {name: args.frames for name in names} if args.frames else {}
    if args.dump:
        now = run(args, picks)
        np.savez(args.dump, results=np.array(now["results"], dtype=object), tiles=np.array(now["tiles"], dtype=object))
        return
    report, rows = {}, []
    if args.before:  # first, so that this code's sheet shows the frames that were worst before
        before = _before(args)
        report["before"], rows = before["results"], [("before", before["tiles"])]
        picks = picks or {name: [i for i, _ in tiles] for name, tiles in before["tiles"].items()}
    now = run(args, picks)
    report["after"] = now["results"]
    rows.append(("after", now["tiles"]))
    if args.sheet:
        shown = [
            (label, {k: v for k, v in tiles.items() if not args.blocks or k in args.blocks}) for label, tiles in rows
        ]
        sheet(shown, args.sheet)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
