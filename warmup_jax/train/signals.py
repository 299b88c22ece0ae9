"""SIGTERM and Ctrl-C during a training run: a flag the loop reads at every step boundary.

Light on purpose (no jax): the command line installs it before anything else, so a signal during
start-up (imports, data preparation, compilation) is not lost; the loop then saves a checkpoint of
the state it has and stops. A second Ctrl-C raises KeyboardInterrupt: stop at once.
"""

from __future__ import annotations

import signal

__all__ = ["EXIT_STATUS", "StopFlag"]

EXIT_STATUS = {"SIGINT": 128 + signal.SIGINT, "SIGTERM": 128 + signal.SIGTERM}  # 130, 143


class StopFlag:
    """``with StopFlag() as flag:`` sets ``flag.signal_name`` on SIGTERM, and on SIGINT unless a
    caller above already handles SIGINT (a sweep does, and passes it on as a SIGTERM)."""

    def __init__(self):
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    @property
    def stop(self) -> bool:
        return self.signal_name is not None

    def __enter__(self) -> StopFlag:
        signums = [signal.SIGTERM]
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signums.append(signal.SIGINT)
        for signum in signums:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not in the main thread: no signal handling
                break
        return self

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if name == "SIGINT" and self.signal_name == "SIGINT":
            raise KeyboardInterrupt  # the second Ctrl-C
        self.signal_name = name

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
