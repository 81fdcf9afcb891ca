"""The benchmarks under bench/ are run by hand, so each must explain itself with --help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if not p.name.startswith("_"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_bench_script_answers_help_with_what_it_measures_and_runs_nothing(script):
    done = subprocess.run([sys.executable, str(BENCH / script), "--help"], cwd=BENCH.parent,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {script} [-h]")
    assert "machine:" not in done.stdout  # the benchmark itself did not run
    first_line = (BENCH / script).read_text().split('"""')[1].splitlines()[0]
    assert first_line in done.stdout
    assert "-h, --help" in done.stdout
