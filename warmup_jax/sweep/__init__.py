"""Sweeps: the cells of a study run one after another, one record per cell, reports from the records.

A study (``experiments/<study>.py`` defining ``STUDY = Study(...)``) is a named config, base
overrides and a grid over any config fields (optimizer × peak learning rate × warmup × seed ×
...). ``warmup-jax sweep`` trains the cells that have no record yet and appends one JSON line per
finished cell to the study's records file; ``warmup-jax report`` turns the records alone into a
markdown table and figures. The records are the results: everything downstream reads them, never
the run folders.

Which module owns what:

* :mod:`warmup_jax.sweep.study`: :class:`Study`, loading a study file, expanding it into
  :class:`Cell` s (stable ids, typed values) and validating every cell's config before any work.
* :mod:`warmup_jax.sweep.runner`: :func:`run_sweep` (skip recorded cells, train the others through
  :class:`warmup_jax.train.trainer.Trainer`, resume interrupted ones, record failures and
  divergences, progress and ETA), and the records file (:func:`read_records`, :func:`append_record`).
* :mod:`warmup_jax.sweep.report`: :func:`write_report` (grouping over seeds, the markdown table,
  the PNG figures).

The sweep depends on the library's public entry points only (``load_config``, ``Config.validate``,
the trainer, the optimizer checks); nothing in the trainer knows about sweeps.
"""

from warmup_jax.sweep.study import Cell, Study, load_study, plan_cells

__all__ = ["Cell", "Study", "load_study", "plan_cells", "read_records", "run_sweep", "write_report"]


def __getattr__(name: str):
    # The runner and the report import numpy/jax/matplotlib: only when used, so that study files
    # (``from warmup_jax.sweep import Study``) load fast.
    if name in ("run_sweep", "read_records"):
        from warmup_jax.sweep import runner

        return getattr(runner, name)
    if name == "write_report":
        from warmup_jax.sweep.report import write_report

        return write_report
    raise AttributeError(f"module 'warmup_jax.sweep' has no attribute {name!r}")
