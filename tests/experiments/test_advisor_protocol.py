"""The advisor's validation rules (experiments/results_advisor.py): how levels are fitted, and that
the library's default levels are the ones the committed fit cells give."""

import importlib.util
import math
import os
import sys

import pytest

from warmup_jax import advisor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
spec = importlib.util.spec_from_file_location(
    "_test_results_advisor", os.path.join(ROOT, "experiments", "results_advisor.py")
)
validation = sys.modules.setdefault(spec.name, importlib.util.module_from_spec(spec))  # for its dataclasses
spec.loader.exec_module(validation)


def _case(angle, rrc, gap, spread=0.1):
    return validation.Case("fit", "x", 1e-3, 16, gap, spread, {"angle_ratio": angle, "rrc": rrc}, {}, 1.0)


def test_the_level_maximises_balanced_accuracy_and_ties_go_higher():
    cases = [_case(a, 0.01, gap) for a, gap in ((1, 0.0), (2, 0.0), (3, 0.0), (10, 0.5), (20, 0.5))]
    level, accuracy = validation.fit_level(cases, "angle_ratio")
    assert level == 6.5 and accuracy == 1.0  # between 3 and 10
    assert validation.confusion(cases, "angle_ratio", level) == {"tp": 2, "fn": 0, "fp": 0, "tn": 3}
    # One distinct rrc score: no level between two scores exists.
    assert all(math.isnan(x) for x in validation.fit_level(cases, "rrc"))
    levels, fits = validation.fitted_levels([*cases, _case(5, 0.02, 0.0)])
    assert levels.signal == "angle_ratio" and fits["angle_ratio"][1] == 1.0


def test_the_library_defaults_are_the_fit_of_the_committed_comparison():
    records = validation._records("compare")
    if not records:
        pytest.fail("experiments/records/compare.jsonl is missing: the defaults cannot be checked")
    levels, _ = validation.fitted_levels(validation.fit_cases(records))
    assert levels.signal == advisor.DEFAULT_LEVELS.signal
    assert levels.angle_ratio == pytest.approx(advisor.DEFAULT_LEVELS.angle_ratio, rel=5e-3)
    assert levels.rrc == pytest.approx(advisor.DEFAULT_LEVELS.rrc, rel=5e-3)


def test_the_held_out_verdict_says_when_no_signal_beats_the_base_rate():
    levels = advisor.Levels(angle_ratio=5.0, rrc=0.05)
    loud = [_case(9, 0.09, 0.0) for _ in range(3)] + [_case(9, 0.09, 0.5)]  # 3 of 4 above, needed or not
    (line,) = validation.verdict(loud, levels, majority=False)
    assert "do not support a predictor" in line and "4 of 4 held-out cells" in line and "(0.75)" in line
    telling = [_case(1, 0.01, 0.0) for _ in range(3)] + [_case(9, 0.09, 0.5)]
    (line,) = validation.verdict(telling, levels, majority=False)
    assert line.startswith("Held-out verdict: the angle_ratio rule beats the base rate (1.00 against 0.75")
