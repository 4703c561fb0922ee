"""Cross-checks: the eval-loss agreement rebuilds each framework's own averaging from our per-record losses."""
from __future__ import annotations

import pytest

from harness.checks import ddp_step_mean, eval_agreement

# [summed cross-entropy, supervised tokens] of four records: per-record means 2, 1, 4, 3.
RECORDS = [[20.0, 10], [5.0, 5], [8.0, 2], [30.0, 10]]


def test_ddp_step_mean_is_the_token_weighted_mean_of_each_step_of_world_size_records():
    # 2 ranks: step 0 = records 0,1 -> 25/15; step 1 = records 2,3 -> 38/12.
    assert ddp_step_mean(RECORDS, 2) == pytest.approx((25 / 15 + 38 / 12) / 2)
    assert ddp_step_mean(RECORDS, 1) == pytest.approx((2 + 1 + 4 + 3) / 4)


def test_single_process_compares_with_the_mean_over_records():
    evaluation = {"record_mean_loss": 2.5, "record_losses": RECORDS, "framework_loss": 2.5004}
    check = eval_agreement(evaluation)
    assert check["passed"] is True and "mean over records" in check["detail"]
    assert eval_agreement(dict(evaluation, framework_loss=2.52))["passed"] is False


def test_under_ddp_either_averaging_matches_and_the_detail_names_which():
    ddp = (25 / 15 + 38 / 12) / 2
    evaluation = {"record_mean_loss": 2.5, "record_losses": RECORDS, "framework_loss": ddp + 1e-4}
    check = eval_agreement(evaluation, world_size=2)
    assert check["passed"] is True and "2 ranks" in check["detail"]
    assert eval_agreement(evaluation, world_size=1)["passed"] is False  # one process: only the record mean
    assert eval_agreement(dict(evaluation, framework_loss=2.5), world_size=2)["passed"] is True  # trl's way
    assert eval_agreement(dict(evaluation, framework_loss=3.0), world_size=2)["passed"] is False


def test_no_framework_loss_does_not_apply():
    assert eval_agreement({"record_mean_loss": 2.5, "framework_loss": None})["passed"] is None
