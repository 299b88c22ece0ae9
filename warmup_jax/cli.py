"""warmup-jax: the command line, a thin shell over the library.

    warmup-jax train [--config NAME|FILE.py] [--set section.field=value ...] [--resume]
    warmup-jax configs                 # named configs and optimizers
    warmup-jax prepare-data [--config ...] [--set ...]   # corpus + tokenizer only
    warmup-jax plot RUN_DIR [RUN_DIR ...]                # figures of logged runs
    warmup-jax sweep STUDY.py [--max-cells N] [--only KEY=VALUE ...]   # the cells of a study
    warmup-jax report STUDY.py|RECORDS.jsonl [--out FILE.md]          # its table and figures

Bad input exits with status 2 and one line naming the field or file; a run stopped by SIGTERM
saves a checkpoint and exits with 143. ``sweep`` exits with 0 when every selected cell has a
record, 3 when cells are left (``--max-cells``), 130/143 when SIGINT/SIGTERM stopped it.

Help texts and the listing of ``warmup-jax configs`` come partly from docstrings, which are
written in reStructuredText; :func:`plain_text` turns their markup into plain text for the
terminal.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import re
import signal
import sys

from warmup_jax.errors import CheckpointError, CheckpointSaveError, ConfigError, NonFiniteError

DEFAULT_CONFIG = "quickstart"

# LaTeX commands that appear in docstrings, as the characters a terminal shows.
_LATEX_SYMBOLS = {
    "alpha": "α",
    "beta": "β",
    "gamma": "γ",
    "delta": "δ",
    "Delta": "Δ",
    "epsilon": "ε",
    "varepsilon": "ε",
    "eta": "η",
    "theta": "θ",
    "kappa": "κ",
    "lambda": "λ",
    "mu": "μ",
    "nu": "ν",
    "pi": "π",
    "rho": "ρ",
    "sigma": "σ",
    "tau": "τ",
    "phi": "φ",
    "varphi": "φ",
    "ell": "ℓ",
    "cdot": "·",
    "times": "×",
    "le": "≤",
    "leq": "≤",
    "ge": "≥",
    "geq": "≥",
    "ne": "≠",
    "approx": "≈",
    "to": "→",
    "infty": "∞",
    "sum": "Σ",
    "prod": "∏",
    "odot": "⊙",
    "propto": "∝",
    "in": "∈",
    "perp": "⊥",
    "sim": "~",
    "|": "‖",
}
# Accents, as combining characters after the letter: \hat g -> ĝ.
_ACCENTS = {"hat": "\u0302", "bar": "\u0304", "tilde": "\u0303"}
_SUBSCRIPTS = str.maketrans("0123456789+-=()", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎")
_SUPERSCRIPTS = str.maketrans("0123456789+-=()", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾")
_BRACED = r"\{([^{}]*)\}"


def _script(mark: str, table: dict, match: re.Match) -> str:
    """A sub- or superscript in Unicode where every character has one, else ``_(...)``/``^(...)``."""
    body = match[1] if match[1] is not None else match[2]
    if body and all(ord(c) in table for c in body):
        return body.translate(table)
    return f"{mark}{body}" if len(body) == 1 else f"{mark}({body})"


def _group(text: str) -> str:
    """``text`` as an operand: bare if it is one word or number, else in parentheses."""
    return text if re.fullmatch(r"\w+", text) else f"({text})"


def _fraction(match: re.Match) -> str:
    numerator, denominator = match[1] or match[2], match[3] or match[4]
    return f"{_group(numerator)}/{_group(denominator)}"


def _latex_to_text(math: str) -> str:
    """Inline LaTeX as plain text: ``\\kappa\\sqrt{n}`` -> ``κ√n``, ``g_0^2`` -> ``g₀²``."""
    text = re.sub(r"\\([A-Za-z]+|\|)", lambda m: _LATEX_SYMBOLS.get(m[1], m[0]), math)
    for _ in range(4):  # innermost braces first, so nested arguments come out right
        for mark, table in (("_", _SUBSCRIPTS), ("^", _SUPERSCRIPTS)):
            text = re.sub(re.escape(mark) + r"(?:\{([^{}]*)\}|([0-9]))", functools.partial(_script, mark, table), text)
        text = re.sub(r"\\frac(?:" + _BRACED + r"|(\w))(?:" + _BRACED + r"|(\w))", _fraction, text)
        text = re.sub(r"\\sqrt" + _BRACED, lambda m: "√" + _group(m[1]), text)
        for accent, mark in _ACCENTS.items():
            text = re.sub(rf"\\{accent}\s*(?:\{{(\w)\}}|(\w))", lambda m, mark=mark: (m[1] or m[2]) + mark, text)
        text = re.sub(
            r"\\(?:operatorname|mathrm|mathbf|mathit|mathbb|text|texttt|widehat|overline)" + _BRACED, r"\1", text
        )
    text = re.sub(r"\\(?:mathbb|mathrm|left|right|big|Big)\b\s*", "", text)
    text = re.sub(r"\\[,;:! ]", " ", text)
    text = re.sub(r"\\([A-Za-z]+)", r"\1", text)  # any other command: its name
    text = text.replace("{", "").replace("}", "")
    return re.sub(r"\s+", " ", text).strip()


def plain_text(rst: str) -> str:
    """reStructuredText markup of a docstring as plain text for the terminal.

    ``:math:`a``` becomes its formula in Unicode, ``:func:`f``` (any role) becomes ``f``, a
    double-backquoted literal loses its quotes, and a single-backquoted name keeps them. Example:
    ``plain_text(":math:`v_0 = g_0^2` of ``lion``")`` is ``"v₀ = g₀² of lion"``.
    """
    text = re.sub(r":math:`([^`]*)`", lambda m: _latex_to_text(m[1]), rst)
    text = re.sub(r":[a-z]+(?::[a-z]+)?:`~?([^`]*)`", r"\1", text)
    return re.sub(r"``([^`]+)``", r"\1", text)


def _first_line(doc: str | None) -> str:
    """The first line of a docstring, as plain text ('' if there is none)."""
    lines = (doc or "").strip().splitlines()
    return plain_text(lines[0].strip()) if lines else ""


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help=f"a name from `warmup-jax configs` or a .py file with get_config() (default: {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set optim.lr=3e-3 (repeatable)",
    )


def _load(args) -> Config:  # noqa: F821
    from warmup_jax.config import load_config

    overrides = list(args.overrides)
    if getattr(args, "resume", False):
        overrides.append("train.resume=true")
    if getattr(args, "out_dir", None):
        overrides.append(f"train.out_dir={args.out_dir}")
    return load_config(args.config, overrides)


def _cmd_train(args) -> int:
    from warmup_jax.train.signals import EXIT_STATUS, StopFlag

    # First of all: a SIGTERM or Ctrl-C during start-up is kept (a checkpoint, then exit 143 / 130).
    with StopFlag() as stop:
        import jax

        if args.distributed:
            jax.distributed.initialize()
        from warmup_jax.train.trainer import Trainer

        config = _load(args)
        result = Trainer(config).run(stop=stop)
    if result.interrupted:
        return EXIT_STATUS.get(result.interrupted_by, 143)
    if not result.train_losses:  # resumed at its last step
        print(f"nothing to train: the run in {result.out_dir} already finished at step {result.final_step}")
        return 0
    final_eval = result.eval_losses.get(result.final_step)
    summary = f"done: step {result.final_step}"
    if final_eval is not None:
        summary += f", validation loss {final_eval:.4f}"
    summary += f", {result.tokens_per_second:,.0f} tokens/s, MFU {100 * result.mfu:.2f}%; logs in {result.out_dir}"
    print(summary)
    return 0


def _cmd_prepare_data(args) -> int:
    from warmup_jax.data import prepare_data

    config = _load(args)
    config.data.validate()
    prepared = prepare_data(config.data)
    print(prepared.description)
    return 0


def _cmd_configs(args) -> int:
    from warmup_jax.config import list_configs, load_config
    from warmup_jax.train.optimizer import available_optimizers

    print("configs (warmup-jax train --config NAME):")
    names = list_configs()
    width = max(map(len, names))
    for name in names:
        config = load_config(name)  # fails loudly if a shipped config is broken
        doc = _first_line(importlib.import_module(f"warmup_jax.configs.{name}").__doc__)
        print(f"  {name:{width}s} {doc or config.name}")
    print("optimizers (--set optim.name=NAME, hyperparameters with --set optim.hparams.KEY=VALUE):")
    for name, factory in sorted(available_optimizers().items()):
        print(f"  {name:24s} {_first_line(factory.__doc__)}")
    return 0


def _cmd_plot(args) -> int:
    from warmup_jax.metrics.plots import plot_runs

    for path in plot_runs(args.run_dirs, out_dir=args.out):
        print(path)
    return 0


def _cmd_advise(args) -> int:
    from warmup_jax import advisor

    advice, metrics, config = advisor.advise_run(args.run_dir, steps=args.steps)
    o = config.optim
    if o.warmup_steps:
        print(
            f"note: this run warms up over optim.warmup_steps={o.warmup_steps} steps; the advice is meant for a run "
            "without warmup, whose early signals the warmup would damp",
            file=sys.stderr,
        )
    for line in advice.lines():
        print(line)
    figure = args.figure or os.path.join(args.run_dir, "advice.png")
    print(advisor.plot_advice(advice, metrics, advisor.equilibrium_angle(o.name, o.lr, o.hparams), figure))
    return 0


def _cmd_sweep(args) -> int:
    from warmup_jax.sweep.runner import run_sweep
    from warmup_jax.sweep.study import load_study

    study = load_study(args.study)
    try:
        result = run_sweep(
            study,
            max_cells=args.max_cells,
            only=args.only,
            retry_failed=args.retry_failed,
            quiet=not args.verbose,
            list_only=args.list,
        )
    except KeyboardInterrupt:  # a second Ctrl-C
        print("\ninterrupted; run the same command to resume", file=sys.stderr)
        return 130
    return 0 if args.list else result.exit_status


def _cmd_report(args) -> int:
    from warmup_jax.sweep.report import write_report

    for path in write_report(args.source, out=args.out, figures_dir=args.figures):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="warmup-jax",
        description=_first_line(__doc__),
        epilog="Run `warmup-jax COMMAND --help` for the options of one command.",
    )
    sub = parser.add_subparsers(dest="command")
    train = sub.add_parser(
        "train",
        help="train a GPT (default: the quick-start run)",
        description="Train a GPT with a named config (see `warmup-jax configs`) or a config file; "
        "logs, metrics and checkpoints go to train.out_dir.",
    )
    _add_config_args(train)
    train.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in train.out_dir")
    train.add_argument("--out-dir", help="shorthand for --set train.out_dir=DIR")
    train.add_argument("--distributed", action="store_true", help="call jax.distributed.initialize() (multi-host)")
    train.set_defaults(func=_cmd_train)
    prep = sub.add_parser(
        "prepare-data",
        help="build the corpus and tokenizer of a config, and stop",
        description="Fetch or read the corpus of a config, build its tokenizer and token cache, and stop.",
    )
    _add_config_args(prep)
    prep.set_defaults(func=_cmd_prepare_data)
    configs = sub.add_parser(
        "configs",
        help="list the named configs and the optimizers",
        description="List the named configs (--config NAME) and the optimizers (--set optim.name=NAME).",
    )
    configs.set_defaults(func=_cmd_configs)
    plot = sub.add_parser(
        "plot",
        help="write PNG figures for one or more run folders",
        description="Write PNG figures of the logged loss, learning rate and update metrics; runs are overlaid.",
    )
    plot.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="a folder written by `warmup-jax train`")
    plot.add_argument("--out", default=None, help="folder for the PNGs (default: the first run's folder)")
    plot.set_defaults(func=_cmd_plot)
    advise = sub.add_parser(
        "advise",
        help="say from a run's first steps whether it needs a warmup, and how long",
        description="Read the first N logged steps of a run without warmup (its update metrics) and say whether "
        "this optimizer, learning rate and batch need a warmup, with a recommended length and the evidence per "
        "layer group; draw the signals with their levels (RUN_DIR/advice.png).",
    )
    advise.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by `warmup-jax train`")
    advise.add_argument("--steps", type=int, default=None, metavar="N", help="read the first N steps (default 5%%)")
    advise.add_argument("--figure", default=None, help="the PNG to write (default: RUN_DIR/advice.png)")
    advise.set_defaults(func=_cmd_advise)
    sweep = sub.add_parser(
        "sweep",
        help="train the cells of a study that have no record yet",
        description="Train the cells of a study (experiments/<study>.py defining STUDY) one after another, each in "
        "runs/sweeps/<study>/<cell id>, and append one JSON line per finished cell to the study's records file. "
        "Recorded cells are skipped, interrupted ones resume from their checkpoint; Ctrl-C or SIGTERM saves a "
        "checkpoint and stops. Exit status 0: every selected cell has a record; 3: cells are left.",
    )
    sweep.add_argument("study", metavar="STUDY.py", help="a study file defining STUDY = Study(...)")
    sweep.add_argument("--max-cells", type=int, default=None, metavar="N", help="train at most N cells, then stop")
    sweep.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only the cells with this value, e.g. --only optim.name=adamw (repeatable; a key twice: either value)",
    )
    sweep.add_argument("--retry-failed", action="store_true", help="train again the cells recorded as failed")
    sweep.add_argument("--list", action="store_true", help="list the cells and their status; train nothing")
    sweep.add_argument("--verbose", action="store_true", help="show the trainer's progress and messages")
    sweep.set_defaults(func=_cmd_sweep)
    report = sub.add_parser(
        "report",
        help="write the markdown table and figures of a study from its records",
        description="Regenerate a study's results from its records alone: a markdown table of the final validation "
        "loss over seeds and PNG figures (loss vs learning rate, update-norm and loss curves).",
    )
    report.add_argument("source", metavar="STUDY.py|RECORDS.jsonl", help="a study file or its records file")
    report.add_argument("--out", default=None, help="the markdown file (default: experiments/RESULTS_<study>.md)")
    report.add_argument("--figures", default=None, help="folder of the PNGs (default: experiments/figures/<study>)")
    report.set_defaults(func=_cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from absl import logging as absl_logging

    from warmup_jax.data import CorpusError

    absl_logging.set_verbosity(absl_logging.ERROR)  # tfds/orbax chatter; our progress goes to the console
    try:
        return args.func(args)
    except CheckpointSaveError as e:  # the run itself was fine: its storage failed
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (ConfigError, CheckpointError, CorpusError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NonFiniteError as e:  # a result of training, not a bad input
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, without a checkpoint of the last steps
        print("interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:  # the reader went away (`... --list | head`): stop quietly, as `ls | head` does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 128 + signal.SIGPIPE
    except OSError as e:  # a log or a report cannot be written (disk full, the folder vanished)
        where = f" {e.filename!r}:" if e.filename else ""
        print(f"error: cannot write{where} {e.strerror or e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
