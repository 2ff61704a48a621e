"""The benchmark suite's plumbing: summary lines, the results file, time limits (no benchmark is run)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import suite  # noqa: E402
import summary  # noqa: E402


def test_a_summary_line_round_trips(capsys: pytest.CaptureFixture[str]) -> None:
    print("a report for people")
    summary.emit("api", [summary.Figure("write p99", 12.5, "ms", goal="<= 50 ms", met=True)], cmd="x --y")
    found = summary.parse(capsys.readouterr().out)
    assert found is not None
    assert found["bench"] == "api" and found["command"] == "x --y"
    assert found["figures"] == [
        {"name": "write p99", "value": 12.5, "unit": "ms", "goal": "<= 50 ms", "met": True, "anchor": None}
    ]


def test_no_summary_line_is_none() -> None:
    assert summary.parse("just a report\nBENCH-SUMMARY {not json\n") is None


def test_a_run_goes_on_top_and_keeps_the_older_ones(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text(f"# Benchmark results\n\nintro\n\n{suite.INTRO_END}\n\n## old run\n\nold figures\n")
    suite.insert(results, "## new run\n\nnew figures")
    text = results.read_text()
    assert text.index("intro") < text.index("## new run") < text.index("## old run")
    assert "old figures" in text


def test_a_results_file_without_the_marker_gets_one_before_its_first_section(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\nintro\n\n## old run\n\nold figures\n")
    suite.insert(results, "## new run")
    text = results.read_text()
    assert text.index("intro") < text.index(suite.INTRO_END) < text.index("## new run") < text.index("## old")


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "bench_fake.py"
    path.write_text(body)
    return str(path)


def test_a_benchmark_past_its_limit_is_stopped_and_reported(tmp_path: Path) -> None:
    script = _script(tmp_path, "import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    outcome = suite.run_one(suite.Bench("slow", script, 1.0, 1.0, "sleeps"), quick=False)
    assert outcome.returncode is None
    assert outcome.seconds < 30
    assert "started" in outcome.output
    assert suite._status(outcome) == "stopped at its time limit"


def test_the_table_shows_goals_met_and_missed(tmp_path: Path) -> None:
    body = (
        f"import sys; sys.path.insert(0, {str(BENCH)!r})\n"
        "from summary import Figure, emit\n"
        "assert '--quick' in sys.argv\n"
        "emit('fake', [Figure('rate', 700.0, 'pods/s', goal='>= 500 pods/s', met=True),"
        " Figure('p99', 120.0, 'ms', goal='<= 100 ms', met=False)])\n"
    )
    outcome = suite.run_one(suite.Bench("fake", _script(tmp_path, body), 30, 30, "fake"), quick=True)
    assert suite._status(outcome) == "ok"
    rows = suite.table([outcome])
    assert "| fake | rate | 700 pods/s | >= 500 pods/s | **yes** |  |" in rows
    assert "| fake | p99 | 120 ms | <= 100 ms | **no** |  |" in rows
