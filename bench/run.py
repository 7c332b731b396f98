"""Run every benchmark, write ``bench/results.json`` and rewrite ``BENCHMARKS.md``.

A benchmark is any ``bench/*.py`` module (but ``common``, ``run`` and ``__init__``) defining
``run() -> list[Result]``; it may also define ``NOTES: list[str]`` for the report.
``make bench`` runs this file. ``--only NAME …`` runs the named modules and merges their figures into
the report: a figure of the same name is replaced, the other modules' figures and notes are kept.
Each figure names the run that measured it (date, machine, Python), so kept ones keep theirs.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib
import json
import sys
import time
import traceback
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPEATS, Result, fmt_number, format_table, machine, write_json

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
SKIP = {"__init__", "common", "run"}
RESULTS_JSON = BENCH_DIR / "results.json"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"


def discover(only: Iterable[str] = ()) -> list[ModuleType]:
    """The benchmark modules, by file name; ``only`` keeps the named ones."""
    wanted = set(only)
    modules = []
    for path in sorted(BENCH_DIR.glob("*.py")):
        if path.stem in SKIP or (wanted and path.stem not in wanted):
            continue
        module = importlib.import_module(f"bench.{path.stem}")
        if callable(getattr(module, "run", None)):
            modules.append(module)
    return modules


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _describe(info: dict[str, Any]) -> str:
    memory = f"{info['memory_gib']} GiB" if info.get("memory_gib") is not None else "unknown memory"
    cores = f"{info['cores']} usable cores of {info['cpu_count']}"
    return f"{info['cpu']}, {cores}, {memory}, {info['os']}, {info['arch']}"


def describe_run(info: dict[str, Any], when: dt.datetime) -> str:
    """What names one run of the benchmarks: its date, its machine and its Python."""
    date = when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{date}; {_describe(info)}; Python {info['python']} ({info['implementation']})"


def stamped(results: Sequence[Result], run: str) -> list[Result]:
    """``results``, each naming the run that measured it (``run`` for those that name none yet)."""
    return [r if r.run else dataclasses.replace(r, run=run) for r in results]


def _run_letter(index: int) -> str:
    return chr(ord("A") + index) if index < 26 else f"R{index + 1}"


def render_markdown(
    results: Sequence[Result], info: dict[str, Any], when: dt.datetime, notes: Sequence[str] = ()
) -> str:
    """The text of BENCHMARKS.md: its runs (figures not measured by this run, ``info`` at ``when``,
    name theirs: ``--only`` keeps them), then a row per figure with its run's letter."""
    results = stamped(results, describe_run(info, when))
    runs = sorted({str(r.run) for r in results})  # each starts with its date: oldest first
    letters = {run: _run_letter(i) for i, run in enumerate(runs)}
    lines = [
        "# Benchmarks",
        "",
        "Written by `bench/run.py`; do not edit by hand. Each figure names the run that measured it:",
        "",
        *[f"- Run {letters[run]}: {run}" for run in runs],
        "",
        "| figure | value | unit | baseline | ratio | target | meets target | run |",
        "|---|---:|---|---:|---:|---:|---|---|",
    ]
    for r in results:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        target = f"≥ {fmt_number(r.target)}" if r.target is not None else "-"
        met = {True: "yes", False: "**no**", None: "-"}[r.meets_target]
        lines.append(
            f"| {_cell(r.name)} | {fmt_number(r.value)} | {_cell(r.unit)} | {fmt_number(r.baseline)} "
            f"| {ratio} | {target} | {met} | {letters[str(r.run)]} |"
        )
    lines += [
        "",
        "The baseline is the simpler way of doing the same thing, measured in the same run; "
        "ratio = value / baseline. The target is the least the design counts on.",
        "",
        f"The machine is shared and noisy: every figure is the median of {REPEATS} repeats, "
        "and figures from different machines or runs are not comparable.",
        "",
        "How to reproduce: `make bench` (runs `python bench/run.py`; writes this file and `bench/results.json`).",
    ]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def write_report(
    results: Sequence[Result],
    json_path: Path = RESULTS_JSON,
    md_path: Path = BENCHMARKS_MD,
    info: dict[str, Any] | None = None,
    when: dt.datetime | None = None,
    notes: Sequence[str] = (),
) -> tuple[Path, Path]:
    """Write the results as JSON and as the markdown report; a figure that names no run is this run's."""
    info, when = info or machine(), when or dt.datetime.now(dt.UTC)
    results = stamped(results, describe_run(info, when))
    write_json(results, json_path)
    md_path.write_text(render_markdown(results, info, when, notes))
    return json_path, md_path


def previous_report(json_path: Path, md_path: Path) -> tuple[list[Result], list[str]]:
    """The figures and notes of the report written last (none when there is none)."""
    try:
        results = [Result(**item) for item in json.loads(json_path.read_text())]
        text = md_path.read_text()
    except (OSError, ValueError, TypeError):
        return [], []
    _, _, notes = text.partition("\n## Notes\n")
    return results, [line[2:] for line in notes.splitlines() if line.startswith("- ")]


def merge(
    old: Sequence[Result], old_notes: Sequence[str], new: Sequence[Result], new_notes: Sequence[str], ran: Sequence[str]
) -> tuple[list[Result], list[str]]:
    """``new`` figures in place of the same-named ``old`` ones (the others kept, new names appended), and
    the notes of the modules that did not run (a note names its module first) with the new ones."""
    fresh = {r.name: r for r in new}
    results = [fresh.pop(r.name, r) for r in old] + [r for r in new if r.name in fresh]
    kept = [n for n in old_notes if not any(n.startswith((f"{name}:", f"{name} (", f"{name},")) for name in ran)]
    return results, kept + [n for n in new_notes if n not in kept]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=(), help="module names, e.g. nats_baseline")
    parser.add_argument("--json", type=Path, default=RESULTS_JSON)
    parser.add_argument("--markdown", type=Path, default=BENCHMARKS_MD)
    args = parser.parse_args(argv)

    results: list[Result] = []
    notes: list[str] = []
    failed: list[str] = []
    for module in discover(args.only):
        print(f"== {module.__name__}", flush=True)
        start = time.perf_counter()
        try:
            results.extend(module.run())
        except Exception as exc:  # noqa: BLE001 (one broken benchmark must not lose the others' figures)
            traceback.print_exc()
            failed.append(module.__name__)
            notes.append(f"{module.__name__} FAILED in this run ({type(exc).__name__}: {exc}); no figures from it.")
            continue
        notes.extend(getattr(module, "NOTES", []))
        print(f"   ({time.perf_counter() - start:.1f}s)", flush=True)
    if not results:
        print("no benchmark produced a result", file=sys.stderr)
        return 1
    if args.only:
        old, old_notes = previous_report(args.json, args.markdown)
        ran = [module.__name__.removeprefix("bench.") for module in discover(args.only)]
        results, notes = merge(old, old_notes, results, notes, ran)
    json_path, md_path = write_report(results, args.json, args.markdown, notes=notes)
    print()
    print(format_table(results))
    print(f"\nwrote {json_path} and {md_path}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
