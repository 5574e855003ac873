"""kill -9 of a ``torchrun --nproc_per_node 2`` CPU run, three times: ``--resume`` ends bit-exact.

The kills land at random moments of a step and in the middle of a checkpoint write (see
``tools/reliability_kills.py``, which runs the same code with more kills for ``docs/reliability.md``).
"""

from __future__ import annotations

import pytest

from tools.reliability_kills import compare, kill_and_resume, make_clips, run_reference

STEPS, KILLS = 10, 3  # room for three kills however fast the steps run (each kill waits for a new checkpoint)


@pytest.mark.timeout(400)
def test_three_kills_of_a_two_rank_run_resume_to_the_same_weights(tmp_path):
    clips = make_clips(tmp_path / "clips")
    run_reference(tmp_path / "reference", clips, STEPS)
    report = kill_and_resume(tmp_path / "killed", clips, STEPS, KILLS, seed=0)
    assert len(report.kills) == KILLS and report.launches == KILLS + 1
    assert {k.target for k in report.kills} == {"step", "checkpoint"}
    # Every kill was survived with progress kept: the newest complete checkpoint never went backwards.
    resumed_from = [k.last_complete_step for k in report.kills]
    assert resumed_from == sorted(resumed_from) and resumed_from[-1] >= 1
    compare(report, tmp_path / "reference", tmp_path / "killed")
    assert report.tensors_compared > 100
    assert report.identical, f"{len(report.differing)} tensors differ, e.g. {report.differing[:3]}"
    log = (tmp_path / "killed.log").read_text()
    assert log.count("resumed from") >= 1 and "2 rank(s)" in log
