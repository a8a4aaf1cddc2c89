"""Suite ``cli``: start-up time of the ``crnn`` command (``crnn --help`` and ``crnn train --help``).

Each repeat runs the command in a fresh Python process (``python -m crnn ...``) and times it from
start to exit, imports included; the time a user waits for the help. ``crnn --help`` imports no stage
module; ``crnn train --help`` imports the train stage, which loads Keras only when training starts.
The environment is the caller's without ``TF_CPP_MIN_LOG_LEVEL``, as a user's shell has it.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from benchmarks.common import crnn_cmd, env_with, fmt, measurement, median, run_measured, spread, table

NAME = "cli"
DEFAULT_REPEAT = 5
#: the commands timed, as typed after ``crnn``
COMMANDS = (("--help",), ("train", "--help"))


def add_arguments(p: argparse.ArgumentParser) -> None:  # no options of its own
    del p


def run(args: argparse.Namespace, quick: bool) -> dict[str, Any]:
    repeat = 1 if quick else (args.repeat or DEFAULT_REPEAT)
    env = {k: v for k, v in env_with().items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    measurements = []
    for command in COMMANDS:
        times = [run_measured(crnn_cmd(*command), env=env)[0] for _ in range(repeat)]
        measurements.append(measurement(f"crnn {' '.join(command)}", "s", times, command=list(command)))
    return {"repeat": repeat, "load_average": os.getloadavg()[0], "measurements": measurements}


def markdown(result: dict[str, Any]) -> str:
    rows = [[f"`{m['name']}`", fmt(median(m), "s"), spread(m)] for m in result["measurements"]]
    return (
        f"Wall time of `python -m crnn ...` in a fresh process, imports included, {result['repeat']} repeat(s) "
        f"(load average {result['load_average']:.1f} at the start).\n\n"
        + table(["command", "time (median)", "spread"], rows)
    )
