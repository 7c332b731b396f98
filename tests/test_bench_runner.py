"""bench/run.py's writer: valid JSON with the required keys, and a markdown table of every figure."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from bench.common import Result, format_table, median
from bench.run import SKIP, discover, render_markdown, write_report

KEYS = {"name", "value", "unit", "baseline", "ratio", "target", "run"}
INFO = {
    "cpu": "Test CPU 9000",
    "cores": 2,
    "cpu_count": 4,
    "memory_gib": 7.5,
    "python": "3.11.7",
    "implementation": "CPython",
    "os": "Debian GNU/Linux 12 (Linux 6.1)",
    "arch": "x86_64",
}
WHEN = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)
RESULTS = [
    Result.compare("core pub/sub", 123456.7, "msgs/s", None, 50_000),
    Result.compare("publish_async | awaited", 30000.0, "msgs/s", 5000.0, 10_000),
    Result("latency p50", 0.42, "ms"),
    Result.compare("slow path", 10.0, "ops/s", 20.0, 100.0),
]


def _table_rows(markdown: str) -> list[list[str]]:
    rows = []
    for line in markdown.splitlines():
        if line.startswith("|") and line.endswith("|"):
            cells = [c.strip() for c in line.replace("\\|", "\0").strip("|").split("|")]
            rows.append([c.replace("\0", "|") for c in cells])
    return rows


def test_writer_produces_json_and_markdown(tmp_path: Path) -> None:
    json_path, md_path = write_report(
        RESULTS, tmp_path / "results.json", tmp_path / "BENCHMARKS.md", info=INFO, when=WHEN
    )
    data = json.loads(json_path.read_text())
    assert isinstance(data, list)
    assert len(data) == len(RESULTS)
    for item, result in zip(data, RESULTS, strict=True):
        assert set(item) == KEYS
        assert item["name"] == result.name
        assert item["value"] == pytest.approx(result.value)
        assert item["unit"] == result.unit
    assert data[1]["baseline"] == 5000.0
    assert data[1]["ratio"] == pytest.approx(6.0)
    assert data[1]["target"] == 10_000
    assert data[2]["baseline"] is None
    assert data[2]["ratio"] is None
    assert data[2]["target"] is None
    assert {item["run"] for item in data} == {"2026-11-22 10:00 UTC; " + _describe_info() + "; Python 3.11.7 (CPython)"}

    markdown = md_path.read_text()
    assert markdown.startswith("# Benchmarks\n")
    assert "Test CPU 9000" in markdown
    assert "2 usable cores" in markdown
    assert "2026-11-22" in markdown
    assert "3.11.7" in markdown
    assert "make bench" in markdown
    assert "median" in markdown
    assert "noisy" in markdown


def test_markdown_table_has_a_row_per_figure() -> None:
    rows = _table_rows(render_markdown(RESULTS, INFO, WHEN, notes=["a note"]))
    header, separator, *body = rows
    assert header == ["figure", "value", "unit", "baseline", "ratio", "target", "meets target", "run"]
    assert all(set(cell) <= set("-:") and cell for cell in separator)
    assert len(body) == len(RESULTS)
    assert all(len(row) == len(header) for row in body)
    by_name = {row[0]: row for row in body}
    assert by_name["core pub/sub"][1:6] == ["123,457", "msgs/s", "-", "-", "≥ 50,000"]
    assert by_name["publish_async | awaited"][3:5] == ["5,000", "6.00x"]
    assert by_name["latency p50"][1] == "0.42"
    assert by_name["core pub/sub"][6] == "yes"
    assert by_name["slow path"][6] == "**no**"
    assert {row[7] for row in body} == {"A"}  # one run


def _describe_info() -> str:
    return "Test CPU 9000, 2 usable cores of 4, 7.5 GiB, Debian GNU/Linux 12 (Linux 6.1), x86_64"


def test_a_partial_run_keeps_the_run_of_each_figure_it_did_not_measure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import types

    import bench.run as runner

    out_json, out_md = tmp_path / "r.json", tmp_path / "B.md"
    write_report(RESULTS, out_json, out_md, info=INFO, when=WHEN)  # the earlier full run, on "Test CPU 9000"
    again = types.ModuleType("bench.again")
    again.run = lambda: [Result("latency p50", 0.40, "ms")]  # type: ignore[attr-defined]
    monkeypatch.setattr(runner, "discover", lambda only=(): [again])
    monkeypatch.setattr(runner, "machine", lambda: {**INFO, "cpu": "Other CPU 1"})
    assert runner.main(["--only", "again", "--json", str(out_json), "--markdown", str(out_md)]) == 0
    runs = {item["name"]: item["run"] for item in json.loads(out_json.read_text())}
    assert "Other CPU 1" in runs["latency p50"]
    assert all("Test CPU 9000" in run for name, run in runs.items() if name != "latency p50")
    markdown = out_md.read_text()
    assert "- Run A: 2026-11-22 10:00 UTC; Test CPU 9000" in markdown  # the earlier run first
    [run_b] = [line for line in markdown.splitlines() if line.startswith("- Run B: ")]
    assert "Other CPU 1" in run_b
    by_name = {row[0]: row for row in _table_rows(markdown)[2:]}
    assert by_name["latency p50"][1] == "0.40"
    assert by_name["latency p50"][7] == "B"
    assert {by_name[r.name][7] for r in RESULTS if r.name != "latency p50"} == {"A"}


def test_notes_are_listed() -> None:
    markdown = render_markdown(RESULTS, INFO, WHEN, notes=["publish_async without wait_stall"])
    assert "## Notes" in markdown
    assert "- publish_async without wait_stall" in markdown
    assert "## Notes" not in render_markdown(RESULTS, INFO, WHEN)


def test_discover_finds_benchmarks_but_not_helpers() -> None:
    names = {module.__name__.rsplit(".", 1)[1] for module in discover()}
    assert "nats_baseline" in names
    assert not names & SKIP
    assert {m.__name__ for m in discover(["nats_baseline"])} == {"bench.nats_baseline"}


def test_helpers() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert Result.compare("x", 1.0, "u", 0.0).ratio is None
    table = format_table(RESULTS)
    assert len(table.splitlines()) == len(RESULTS) + 1
    assert "6.00x" in table


def test_a_failing_benchmark_keeps_the_others_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    import bench.run as runner

    def broken() -> list[Result]:
        raise RuntimeError("SSE answered 429")

    good = types.ModuleType("bench.good")
    good.run = lambda: RESULTS[:1]  # type: ignore[attr-defined]
    bad = types.ModuleType("bench.bad")
    bad.run = broken  # type: ignore[attr-defined]
    monkeypatch.setattr(runner, "discover", lambda only=(): [bad, good])
    monkeypatch.setattr(runner, "machine", lambda: INFO)
    out_json, out_md = tmp_path / "r.json", tmp_path / "B.md"
    assert runner.main(["--json", str(out_json), "--markdown", str(out_md)]) == 1
    assert [row["name"] for row in json.loads(out_json.read_text())] == ["core pub/sub"]
    assert "bench.bad FAILED in this run (RuntimeError: SSE answered 429)" in out_md.read_text()
