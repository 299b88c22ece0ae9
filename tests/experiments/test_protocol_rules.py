"""The comparison's fixed rules (experiments/compare.py) and verdicts (experiments/results.py) on
synthetic records: which cells each stage adds, and which verdict a pattern of losses gets."""

import importlib.util
import math
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_test_{name}", os.path.join(ROOT, "experiments", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compare = _load("compare")
results = _load("results")


def _record(cell, loss, status="ok"):
    return {"study": compare.NAME, "values": dict(cell), "status": status, "final_eval_loss": loss}


def _bowl(label, lr, warmup, seed, *, best_lr, gap, noise=0.0):
    """A loss that is lowest at best_lr, higher by `gap` without warmup, plus a per-seed offset."""
    base = 5.0 + 0.1 * math.log2(lr / best_lr) ** 2
    return base + (gap if warmup == 0 else 0.0) + noise * (seed - 1)


def _run_stages(loss_of, max_rounds=20):
    """Records every cell the rules ask for, round after round, until they ask for no more."""
    records = []
    for _ in range(max_rounds):
        done = {compare._key(r["values"]) for r in records}
        todo = [c for c in compare.comparison_cells(records) if compare._key(c) not in done]
        if not todo:
            return records
        for cell in todo:
            label = compare.variant_of(cell)
            records.append(
                _record(cell, loss_of(label, cell["optim.lr"], cell["optim.warmup_steps"], cell["train.seed"]))
            )
    raise AssertionError("the stages did not settle")


def test_stage_one_is_every_optimizer_lr_and_warmup_at_seed_0():
    cells = compare.comparison_cells([])
    expected = sum(len(lrs) * len(warmups) for _, warmups, lrs in compare.VARIANTS.values())
    assert len(cells) == expected
    assert {c["train.seed"] for c in cells} == {0}
    assert {compare.variant_of(c) for c in cells} == set(compare.VARIANTS)


def test_an_edge_optimum_extends_the_grid_until_it_turns():
    lrs = compare.VARIANTS["LionA"][2]
    # LionA's optimum sits two factor-2 steps above its grid: two extensions, then it turns.
    target = lrs[-1] * 4
    records = _run_stages(
        lambda label, lr, w, s: _bowl(label, lr, w, s, best_lr=target if label == "LionA" else lrs[2], gap=0.05)
    )
    cells = results.Cells(records)
    assert cells.lrs["LionA"] == sorted(lrs) + [lrs[-1] * 2, lrs[-1] * 4, lrs[-1] * 8]
    assert cells.best_lr("LionA", 0.0) == pytest.approx(target)
    assert cells.lrs["LionAR"] == sorted(lrs)


def test_seeds_follow_the_rules():
    # AdamW: a clear gap (0.2 with a seed spread of 0.01) -> 2 seeds; LionAR: a gap of 0.005 with
    # the same spread -> a third seed.
    def loss(label, lr, w, s):
        best = compare.VARIANTS[label][2][2]
        return _bowl(label, lr, w, s, best_lr=best, gap=0.2 if label == "AdamW" else 0.005, noise=0.01)

    cells = results.Cells(_run_stages(loss))
    for label in compare.VARIANTS:
        gap = results.Gap(cells, label)
        assert gap.seeds == (2 if label == "AdamW" else 3), label
        assert gap.ready
    assert results.Gap(cells, "AdamW").sign() == "+"
    assert results.Gap(cells, "LionAR").sign() == "0"


def test_verdicts_follow_the_losses():
    # Every claim of the paper true: AdamW 0.3, LionA 0.2, LionAR 0.08 gaps; RRC and fast-momentum
    # LionAR none; fast-momentum LionA 0.1; no momentum 0.5 worse everywhere.
    gaps = {"AdamW": 0.3, "LionA": 0.2, "LionAR": 0.08, "LionAR + RRC": 0.0, "LionAR fast momentum": -0.01}
    gaps |= {"LionA fast momentum": 0.1, "LionAR no momentum": 0.0}

    def loss(label, lr, w, s):
        best = compare.VARIANTS[label][2][2]
        shift = 0.5 if label == "LionAR no momentum" else 0.0
        return shift + _bowl(label, lr, w, s, best_lr=best, gap=gaps[label], noise=0.004)

    verdicts = [c["verdict"] for c in results.claims(results.Cells(_run_stages(loss)))]
    assert verdicts == ["reproduced"] * 7

    # The opposite world: no optimizer needs warmup, RRC needs it, no momentum is as good.
    gaps = {label: 0.0 for label in compare.VARIANTS} | {"LionAR + RRC": 0.2, "LionAR fast momentum": 0.2}

    def loss2(label, lr, w, s):
        return _bowl(label, lr, w, s, best_lr=compare.VARIANTS[label][2][2], gap=gaps[label], noise=0.004)

    verdicts = [c["verdict"] for c in results.claims(results.Cells(_run_stages(loss2)))]
    assert verdicts == ["not reproduced"] * 7


def test_claims_are_pending_until_the_deciding_cells_are_recorded():
    assert {c["verdict"] for c in results.claims(results.Cells([]))} == {"pending"}


def test_a_diverged_cell_is_the_worst_and_is_never_chosen():
    label = "AdamW"
    lrs = compare.VARIANTS[label][2]

    def loss(lab, lr, w, s):
        return (
            math.inf if (lab == label and w == 0 and lr == lrs[-1]) else _bowl(lab, lr, w, s, best_lr=lrs[2], gap=0.1)
        )

    records = []
    for cell in compare.comparison_cells([]):
        value = loss(compare.variant_of(cell), cell["optim.lr"], cell["optim.warmup_steps"], cell["train.seed"])
        records.append(_record(cell, None, "diverged") if math.isinf(value) else _record(cell, value))
    cells = results.Cells(records)
    assert cells.best_lr(label, 0.0) == lrs[2]
    assert cells.losses(label, 0.0, lrs[-1]) == [math.inf]
