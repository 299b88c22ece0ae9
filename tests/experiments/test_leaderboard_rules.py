"""The leaderboard's and the re-warming study's fixed rules (experiments/leaderboard.py,
experiments/rewarm.py) and their report (experiments/results_leaderboard.py) on synthetic records."""

import importlib.util
import math
import os

from warmup_jax.sweep.study import cell_id

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_test_{name}", os.path.join(ROOT, "experiments", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compare = _load("compare")
leaderboard = _load("leaderboard")
rewarm = _load("rewarm")
postln = _load("postln")
report = _load("results_leaderboard")


def _bowl(lr, best_lr, base=5.0):
    return base + 0.1 * math.log2(lr / best_lr) ** 2


def _compare_records(gap=0.0, noise=0.0):
    """A complete comparison: every variant's grid and seeds, each a bowl at its grid's middle LR."""
    records = []
    for _ in range(20):
        done = {compare._key(r["values"]) for r in records}
        todo = [c for c in compare.comparison_cells(records) if compare._key(c) not in done]
        if not todo:
            return records
        for c in todo:
            middle = compare.VARIANTS[compare.variant_of(c)][2][2]
            loss = _bowl(c["optim.lr"], middle) + (gap if c["optim.warmup_steps"] == 0 else 0.0)
            loss += noise * (c["train.seed"] - 1)
            records.append({"study": compare.NAME, "values": c, "status": "ok", "final_eval_loss": loss})
    raise AssertionError("the comparison did not settle")


def _run_board(loss_of, compare_records, max_rounds=20):
    records = []
    for _ in range(max_rounds):
        done = {leaderboard._key(r["values"]) for r in records}
        todo = [c for c in leaderboard.leaderboard_cells(records, compare_records) if leaderboard._key(c) not in done]
        if not todo:
            return records
        for c in todo:
            method = leaderboard.method_of(c)
            value = loss_of(method, c["optim.lr"], c["optim.warmup_steps"], c["train.seed"])
            records.append({"study": leaderboard.NAME, "values": c, "status": "ok", "final_eval_loss": value})
    raise AssertionError("the stages did not settle")


def test_stage_one_is_every_method_lr_and_warmup_at_seed_0():
    cells = leaderboard.leaderboard_cells([], [])
    assert len(cells) == sum(len(w) * len(compare.ADAMW_LRS) for _, w in leaderboard.METHODS.values())
    assert {leaderboard.method_of(c) for c in cells} == set(leaderboard.METHODS)
    assert {c["train.seed"] for c in cells} == {0}
    porian = [c for c in cells if leaderboard.method_of(c) == "Porian"]
    # Porian's rule asks for more steps than the schedule's warmup may take: capped, and said so.
    assert leaderboard.PORIAN_REQUESTED_STEPS > leaderboard.MAX_WARMUP
    assert {c["optim.warmup_steps"] for c in porian} == {leaderboard.MAX_WARMUP}
    assert all(c["optim.name"] == "adamw" and len(c) == 4 for c in porian)  # plain AdamW otherwise


def test_plain_adamw_is_told_apart_from_porian_by_its_warmup():
    assert leaderboard.method_of({"optim.name": "adamw", "optim.warmup_steps": 60}) == "AdamW"
    assert leaderboard.method_of({"optim.name": "adamw", "optim.warmup_steps": leaderboard.PORIAN_STEPS}) == "Porian"
    assert leaderboard.method_of({"optim.name": "adamw", "model.norm_position": "post"}) == "Post-LN"
    assert leaderboard.method_of({"optim.name": "lion_ar"}) is None


def test_the_stages_add_seeds_and_extend_edges():
    compare_records = _compare_records()
    top = compare.ADAMW_LRS[-1]

    def loss(method, lr, warmup, seed):
        best = top * 2 if method == "RAdam" else compare.ADAMW_LRS[2]  # RAdam's optimum beyond the grid
        gap = 0.3 if method == "Post-LN" and warmup == 0 else 0.0
        return _bowl(lr, best) + gap + 0.01 * (seed - 1)

    records = _run_board(loss, compare_records)
    board = report.Board(compare_records, records)
    assert leaderboard.extended_lrs("RAdam", board.found)[-1] == top * 4  # extended past its optimum, which turns
    assert board.method("RAdam", 0).lr == top * 2
    # Seeds: every deciding cell has seed 1; Post-LN's clear gap needs no third seed, RAdam's none does.
    assert len(board.method("Post-LN", 0).losses) == 2
    assert len(board.method("RAdam", 0).losses) == 3
    best = board.adamw_best_warmup()
    assert len(best.losses) == 3  # the comparison's seed 0 and this study's seeds 1, 2
    verdicts = {c["claim"].split(" (")[0]: c["verdict"] for c in report.claims(board)}
    assert verdicts["RAdam needs no warmup"] == "reproduced"
    assert verdicts["Post-LN needs warmup more than Pre-LN"] == "reproduced"
    assert verdicts["GI-Adam needs less warmup than Adam"] == "not reproduced"  # equal gaps


def test_claims_are_pending_without_records():
    board = report.Board([], [])
    assert {c["verdict"] for c in report.claims(board)} == {"pending"}


def test_the_basin_is_the_contiguous_range_within_one_percent():
    lrs = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    losses = {1.0: 5.3, 2.0: 5.04, 4.0: 5.0, 8.0: 5.049, 16.0: 5.2, 32.0: 5.01}  # 32: within 1 %, not contiguous
    entry = report.Entry("x", lrs, lambda lr, seed: losses[lr] + (0.0 if seed == 0 else math.nan))
    assert entry.lr == 4.0
    assert entry.basin() == (2.0, 8.0)
    missing = report.Entry("y", lrs, lambda lr, seed: math.nan if lr == 32.0 else losses[lr])
    assert missing.lr is None and missing.basin() is None  # an incomplete grid has no best yet


def test_rewarm_continues_only_from_a_finished_base_run():
    assert len(rewarm.rewarm_cells([])) == len(rewarm.SEEDS)
    records = [{"study": rewarm.NAME, "cell_id": cell_id(rewarm.base_cell(1)), "status": "ok"}]
    cells = rewarm.rewarm_cells(records)
    continued = [c for c in cells if c.get("train.init_from")]
    assert continued and {c["train.init_from"] for c in continued} == {rewarm.base_dir(1)}
    assert {c["train.seed"] for c in cells[len(rewarm.SEEDS) :]} == {1}
    labels = [rewarm.condition_of(c) for c in cells[len(rewarm.SEEDS) :]]
    assert labels.count("constant") == 1 and labels.count("scratch") == 1
    assert len(set(labels)) == len(labels) == len(rewarm.CONTINUE_LRS) * len(rewarm.CONTINUE_WARMUPS) + 2


def test_rewarm_verdicts_follow_the_losses():
    # Re-warming: 0.2 better on the new half and 0.2 worse on the old; the warmup length alike.
    def losses(condition, seed):
        noise = 0.005 * seed
        if condition == "constant":
            return [5.0 + noise, 5.4 + noise]
        if condition.startswith("re-warm"):
            return [5.2 + noise, 5.2 + noise]
        return [6.0 + noise, 5.5 + noise]

    records = []
    for seed in rewarm.SEEDS:
        for c in [rewarm.base_cell(seed), *rewarm.continuation_cells(seed)]:
            parts = losses(rewarm.condition_of(c), seed)
            record = {"study": rewarm.NAME, "cell_id": cell_id(c), "values": c, "status": "ok"}
            records.append({**record, "final_eval_loss_by_part": parts})
    verdicts = [c["verdict"] for c in report.rewarm_claims(report.Rewarm(records))]
    assert verdicts == ["reproduced", "reproduced", "reproduced"]
    # A cell trained again (its checkpoints were needed): its last record counts, not both.
    retried = {**records[0], "final_eval_loss_by_part": [9.0, 9.0]}
    again = report.Rewarm([*records, retried])
    assert again.losses("base", 0) == [9.0, losses("base", 1)[0]] and len(again.records) == len(records)
    assert {c["verdict"] for c in report.rewarm_claims(report.Rewarm([]))} == {"pending"}


def test_the_post_ln_follow_up_extends_its_grid_past_an_edge_optimum():
    assert len(postln.postln_cells([])) == len(postln.BASE_LRS) * len(postln.WARMUPS) == 12
    long = postln.WARMUPS[1]
    records = []
    for c in postln.postln_cells([]):
        # Best at the smallest LR for the long warmup; inside the grid for the other.
        best = postln.BASE_LRS[0] if c["optim.warmup_steps"] == long else 2e-3
        record = {"study": postln.NAME, "values": c, "status": "ok", "final_eval_loss": _bowl(c["optim.lr"], best)}
        records.append(record)
    cells = postln.postln_cells(records)
    added = [c for c in cells if c["optim.lr"] not in postln.BASE_LRS]
    assert [(c["optim.warmup_steps"], c["optim.lr"]) for c in added] == [(long, postln.BASE_LRS[0] / 2)]
    assert all(c["model.norm_position"] == "post" and c["train.seed"] == 0 for c in cells)
