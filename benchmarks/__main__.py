"""Run crnn's benchmark suites; write JSON and the Markdown sections of docs/benchmarks.md.

    python -m benchmarks [SUITE ...] [--quick] [--repeat N] [--output-dir DIR] [--no-docs]

No suite named = all of them. Each suite is a module ``benchmarks/<suite>.py`` with ``NAME``,
``add_arguments(parser)``, ``run(args, quick) -> dict`` and ``markdown(result) -> str``; ``run``
returns ``measurements`` (name, unit, one value per repeat). This runner adds the median and spread
of every measurement and the machine (CPU, cores, RAM, GPU, versions, date, git commit), writes
``benchmarks/results/<suite>.json`` and replaces the suite's section of docs/benchmarks.md (between
``<!-- bench:SUITE -->`` and ``<!-- /bench:SUITE -->``; the text outside the markers is kept).

``--quick`` is a smoke test (tiny sizes, one repeat, a couple of minutes in all on 2 cores): it
writes its JSON to ``--output-dir`` (default a new temporary folder) and never touches the docs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import ModuleType

from benchmarks.common import REPO, git_commit, machine, summary

# Order of a full run. train_memory is another helper's module: registered when it exists.
SUITES = ("cli", "simulate", "noise", "ingest", "train", "train_memory", "predict", "quality", "pipeline", "scale")
DOCS = REPO / "docs" / "benchmarks.md"
RESULTS = REPO / "benchmarks" / "results"


def load_suites() -> dict[str, ModuleType]:
    mods: dict[str, ModuleType] = {}
    for name in SUITES:
        try:
            mod = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"benchmarks.{name}":
                continue  # optional suite not present in this checkout
            raise
        mods[getattr(mod, "NAME", name)] = mod
    return mods


def build_parser(suites: dict[str, ModuleType]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("suites", nargs="*", metavar="SUITE", help=f"suites to run (default all): {', '.join(suites)}")
    p.add_argument("--quick", action="store_true", help="smoke test: tiny sizes, 1 repeat, no docs")
    p.add_argument("--repeat", type=int, default=None, help="repeats per measurement (default: the suite's own)")
    p.add_argument(
        "--output-dir",
        default=None,
        help="folder for the JSON results (default benchmarks/results; a temporary folder with --quick)",
    )
    p.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    p.add_argument(
        "--label",
        default="",
        help="tag of this machine kind: writes <suite>-<label>.json and the docs section bench:<suite>-<label>",
    )
    p.add_argument(
        "--render-from",
        metavar="DIR",
        default=None,
        help="run nothing: rebuild the docs sections from the JSON results in DIR (e.g. fetched from "
        "another machine; with --label for <suite>-<label>.json)",
    )
    p.add_argument("--docs", default=str(DOCS), help=argparse.SUPPRESS)
    for name, mod in suites.items():
        group = p.add_argument_group(f"suite {name}")
        mod.add_arguments(group)  # type: ignore[arg-type]
    return p


def command_line(suite: str, argv: list[str]) -> str:
    """The command that reruns this suite alone with the same options."""
    return " ".join(["python -m benchmarks", suite, *(a for a in argv if a not in SUITES)])


def finish(result: dict, suite: str, mod: ModuleType, args: argparse.Namespace, seconds: float) -> dict:
    for m in result.get("measurements", []):
        m["stats"] = summary(m["values"])
    info = machine()
    info["git_commit"] = args.start_commit  # the code that ran: the checkout when the run started
    result = {
        "suite": suite,
        "quick": bool(args.quick),
        "command": command_line(suite, args.argv),
        "wall_time_s": round(seconds, 1),
        "machine": info,
        **result,
    }
    return result


def section(suite: str, mod: ModuleType, result: dict) -> str:
    m = result["machine"]
    gpu = ", ".join(m["gpu"]) or "no GPU"
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    head = (
        f"`{result['command']}` - {m['date_utc'][:10]}, commit {m['git_commit']}; {m['cpu']}, {m['cores']} cores, "
        f"{m['ram_gib']} GiB, {gpu}; Keras backend {m['keras_backend']}; {versions}; "
        f"load average {m['host_load_1min']:.1f} at the end; suite wall time {result['wall_time_s']:.0f} s."
    )
    return f"<!-- bench:{suite} -->\n{head}\n\n{mod.markdown(result).strip()}\n<!-- /bench:{suite} -->"


def update_docs(path: Path, suite: str, text: str) -> None:
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"<!-- bench:{re.escape(suite)} -->.*?<!-- /bench:{re.escape(suite)} -->", re.DOTALL)
    if pattern.search(doc):
        doc = pattern.sub(lambda _m: text, doc, count=1)
    else:
        doc = doc.rstrip("\n") + f"\n\n## Suite `{suite}`\n\n{text}\n"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(doc)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    suites = load_suites()
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(suites).parse_args(argv)
    args.argv = argv
    args.start_commit = git_commit()
    chosen = args.suites or list(suites)
    unknown = [s for s in chosen if s not in suites]
    if unknown:
        print(f"unknown suite(s) {', '.join(unknown)}; available: {', '.join(suites)}", file=sys.stderr)
        return 2
    if args.quick:
        args.repeat = 1
    if args.repeat is not None and args.repeat < 1:
        print("--repeat must be >= 1", file=sys.stderr)
        return 2
    out_dir = (
        Path(args.output_dir)
        if args.output_dir
        else (Path(tempfile.mkdtemp(prefix="crnn-bench-")) if args.quick else RESULTS)
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_docs = not (args.quick or args.no_docs)
    key = (lambda s: f"{s}-{args.label}") if args.label else (lambda s: s)
    if args.render_from:
        for suite in chosen:
            path = Path(args.render_from) / f"{key(suite)}.json"
            if path.exists():
                update_docs(
                    Path(args.docs), key(suite), section(key(suite), suites[suite], json.loads(path.read_text()))
                )
                print(f"[bench] {key(suite)}: docs section rebuilt from {path}", flush=True)
        return 0
    failed = []
    t_all = time.perf_counter()
    for suite in chosen:
        mod = suites[suite]
        print(f"[bench] {suite}: running{' (quick)' if args.quick else ''}", flush=True)
        t0 = time.perf_counter()
        try:
            raw = mod.run(args, args.quick)
        except Exception:
            traceback.print_exc()
            print(f"[bench] {suite}: FAILED", flush=True)
            failed.append(suite)
            continue
        result = finish(raw, suite, mod, args, time.perf_counter() - t0)
        path = out_dir / f"{key(suite)}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(mod.markdown(result).strip(), flush=True)
        if write_docs:
            update_docs(Path(args.docs), key(suite), section(key(suite), mod, result))
        print(f"[bench] {suite}: done in {result['wall_time_s']:.0f} s -> {path}", flush=True)
    print(
        f"[bench] {len(chosen) - len(failed)} of {len(chosen)} suites done in {time.perf_counter() - t_all:.0f} s"
        + (f"; FAILED: {', '.join(failed)}" if failed else ""),
        flush=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
