"""training.curves: the learning-curve figure reads curve JSONs and draws L1, MS-SSIM and warp error panels."""

from __future__ import annotations

import json

import cv2

from training.curves import plot_curves


def _curve(path, l1s):
    reference = {"step": -1, "l1": 0.03, "ms_ssim": 0.8, "warp_error": 6e-4}
    truth = {"step": -1, "l1": 0.0, "ms_ssim": 1.0, "warp_error": 3e-4}
    points = [{"step": 250 * (i + 1), "l1": v, "ms_ssim": 0.9, "warp_error": 5e-4} for i, v in enumerate(l1s)]
    path.write_text(json.dumps({"run": "r", "data": "d", "clips": 1, "frames": 4, "points": points,
                                "static_source": reference, "ground_truth": truth}))  # fmt: skip
    return path


def test_plot_reads_curve_jsons_into_a_figure_of_the_three_panel_size(tmp_path):
    curves = {"a": _curve(tmp_path / "a.json", [0.02, 0.018]), "b": _curve(tmp_path / "b.json", [0.025])}
    out = plot_curves(curves, tmp_path / "fig" / "curves.png", title="t")
    image = cv2.imread(str(out))
    assert image is not None and image.shape[1] == 13 * 110 and image.shape[0] == int(3.4 * 110)
