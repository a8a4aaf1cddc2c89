"""The ``crnn`` command: one sub-command per pipeline stage.

Each stage lives in its own module (``crnn.<stage>``) with ``add_arguments(parser)`` and
``run(args)``; it can also be run as ``python -m crnn.<stage>``. Errors that are the user's to
fix (:class:`crnn.errors.CrnnError`) end the command with one line on stderr and exit code 2.
SIGTERM, SIGINT (Ctrl-C) and SIGHUP remove the stage's temporary files and end it with one line
and exit code 128 + the signal number (:mod:`crnn.fileutil`, the output contract).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from crnn.errors import CrnnError
from crnn.fileutil import (
    Interrupted,
    install_signal_handlers,
    interrupted_by,
    interrupted_message,
    io_error_line,
    leave,
    remove_temporaries,
    restore_signal_handlers,
)

STAGES = {
    "simulate": "simulate band-limited pulses in galactic, thermal and human-made noise",
    "merge": "join the chunk files of one simulation into the file of a single run",
    "ingest": "convert HDF5 or ROOT traces to the canonical trace file",
    "dataset": "mix, label and split trace files into train/val/test",
    "train": "train a GRU or LSTM classifier",
    "evaluate": "score a test split: ROC, AUC, efficiency vs SNR, baseline",
    "robustness": "score a model or baseline on other detectors' data (named shifts)",
    "report": "summarise the evaluated models in plots and an HTML page",
    "calibrate": "set a model's working points on noise-only traces of the target detector",
    "predict": "apply a trained model to new traces",
    "export": "write a trained model as ONNX (float or int8) for a trigger outside Python",
    "inspect": "print what a trace file or a model holds",
}


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Help that names every option's default: appended as "(default: X)" where the help text does
    not already state it and the default is a value (not None or False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or default is False
            or default == argparse.SUPPRESS
            or default == []
            or not action.option_strings
            or isinstance(action, (argparse._HelpAction, argparse._VersionAction))
        ):
            return text
        shown = " ".join(str(v) for v in default) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {str(shown).replace('%', '%%')})"


class _VersionAction(argparse.Action):
    """``--version``: the versions of :func:`crnn.versions.software`, gathered only when asked for
    (from package metadata: no framework is imported)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from crnn.versions import version_text

        print(version_text())
        parser.exit()


def _add_stage(sub: argparse._SubParsersAction, name: str) -> None:
    module = importlib.import_module(f"crnn.{name}")
    p = sub.add_parser(
        name,
        help=STAGES[name],
        description=(module.__doc__ or "").strip().split("\n")[0],
        formatter_class=DefaultsHelpFormatter,
    )
    module.add_arguments(p)
    p.set_defaults(_module=module, _stage=name)


def build_parser(stages: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``crnn`` parser with the options of the given stages. Without stages it lists every stage
    by name and one-line help only and imports none of their modules: ``crnn --help`` stays fast and
    loads neither Keras nor TensorFlow."""
    parser = argparse.ArgumentParser(
        prog="crnn", description="Find cosmic-ray air-shower pulses in radio traces with RNNs."
    )
    parser.add_argument(
        "--version",
        action=_VersionAction,
        nargs=0,
        help="show crnn's version and commit and those of Python, Keras, its backend, numpy and h5py",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for name in stages or ():
        _add_stage(sub, name)
    if not stages:
        for name, text in STAGES.items():
            sub.add_parser(name, help=text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # build only the sub-command that is asked for, so `crnn inspect` never imports keras
    wanted = next((a for a in argv if a in STAGES), None)
    old = install_signal_handlers(wanted or "crnn")
    try:
        with _interruptible(wanted or "crnn") as code:
            parser = build_parser([wanted] if wanted else None)
            args = parser.parse_args(argv)
            _setup_logging(args.verbose)
            code[0] = _run(args)
        return leave(code[0])
    finally:
        restore_signal_handlers(old)


class _interruptible:
    """Turn :class:`Interrupted` (and a KeyboardInterrupt that came before the handlers) into one line
    on stderr and exit code 128 + the signal number, after removing the live temporaries."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.code = [0]

    def __enter__(self) -> list[int]:
        return self.code

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        import signal

        if isinstance(exc, KeyboardInterrupt):
            signum: int | None = signal.SIGINT
        elif isinstance(exc, Interrupted):
            signum = exc.signum
        else:
            # a signal whose Interrupted a library turned into another error (a C extension imported
            # at that moment fails with "ImportError: initialization failed") or swallowed (raised in
            # a callback that only prints it): the stage still stops as the signal asked
            signum = interrupted_by()
        if signum is None:
            return False
        remove_temporaries()
        print(interrupted_message(self.stage, signum), file=sys.stderr)
        sys.stderr.flush()
        self.code[0] = 128 + signum
        return True


def _run(args: argparse.Namespace) -> int:
    try:
        args._module.run(args)
    except CrnnError as exc:
        if interrupted_by() is not None:  # a consequence of the signal: one line from _interruptible
            raise
        remove_temporaries()
        print(f"crnn {args._stage}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        line = io_error_line(exc)
        if line is None or interrupted_by() is not None:
            raise
        remove_temporaries()
        print(f"crnn {args._stage}: error: {line}", file=sys.stderr)
        return 2
    return 0


def stage_main(stage: str, argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m crnn.<stage>``."""
    old = install_signal_handlers(stage)
    try:
        with _interruptible(stage) as code:
            parser = argparse.ArgumentParser(
                prog=f"python -m crnn.{stage}", description=STAGES[stage], formatter_class=DefaultsHelpFormatter
            )
            parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
            module = importlib.import_module(f"crnn.{stage}")
            module.add_arguments(parser)
            parser.set_defaults(_module=module, _stage=stage)
            args = parser.parse_args(argv)
            _setup_logging(args.verbose)
            code[0] = _run(args)
    finally:
        restore_signal_handlers(old)
    sys.exit(leave(code[0]))


if __name__ == "__main__":
    sys.exit(main())
