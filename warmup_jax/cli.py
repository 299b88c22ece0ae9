"""``warmup-jax``: the command line, a thin shell over the library.

    warmup-jax train [--config NAME|FILE.py] [--set section.field=value ...] [--resume]
    warmup-jax configs                 # named configs and optimizers
    warmup-jax prepare-data [--config ...] [--set ...]   # corpus + tokenizer only

Bad input exits with status 2 and one line naming the field or file; a run stopped by SIGTERM
saves a checkpoint and exits with 143.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from warmup_jax.errors import CheckpointError, ConfigError

DEFAULT_CONFIG = "quickstart"


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
    import jax

    if args.distributed:
        jax.distributed.initialize()
    from warmup_jax.train.trainer import train

    config = _load(args)
    result = train(config)
    if result.interrupted:
        return 143
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
    for name in list_configs():
        config = load_config(name)  # fails loudly if a shipped config is broken
        doc = (importlib.import_module(f"warmup_jax.configs.{name}").__doc__ or "").strip()
        print(f"  {name:12s} {doc.splitlines()[0] if doc else config.name}")
    print("optimizers (--set optim.name=NAME):")
    for name, factory in sorted(available_optimizers().items()):
        doc = (factory.__doc__ or "").strip().splitlines()
        print(f"  {name:24s} {doc[0] if doc else ''}")
    return 0


def _cmd_plot(args) -> int:
    from warmup_jax.metrics.plots import plot_runs

    for path in plot_runs(args.run_dirs, out_dir=args.out):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="warmup-jax", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    train = sub.add_parser("train", help="train a GPT (default: the quick-start run)")
    _add_config_args(train)
    train.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in train.out_dir")
    train.add_argument("--out-dir", help="shorthand for --set train.out_dir=DIR")
    train.add_argument("--distributed", action="store_true", help="call jax.distributed.initialize() (multi-host)")
    train.set_defaults(func=_cmd_train)
    prep = sub.add_parser("prepare-data", help="build the corpus and tokenizer of a config, and stop")
    _add_config_args(prep)
    prep.set_defaults(func=_cmd_prepare_data)
    configs = sub.add_parser("configs", help="list the named configs and the optimizers")
    configs.set_defaults(func=_cmd_configs)
    plot = sub.add_parser("plot", help="write PNG figures for one or more run folders")
    plot.add_argument("run_dirs", nargs="+")
    plot.add_argument("--out", default=None, help="folder for the PNGs (default: the first run's folder)")
    plot.set_defaults(func=_cmd_plot)
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
    except (ConfigError, CheckpointError, CorpusError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
