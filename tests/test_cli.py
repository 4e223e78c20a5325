"""The `psl` command: version, help and the ops benchmark."""

import re

from typer.testing import CliRunner

import psl
from psl.cli import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"psl {psl.__version__}"


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "bench" in result.output


def test_bench_ops_prints_a_row_per_benchmark_with_a_ratio():
    result = runner.invoke(app, ["bench", "ops", "--batch", "2", "--seconds", "1", "--repeats", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if re.search(r"\d+\.\d\dx", line)]
    assert [row.split()[0] for row in rows] == ["log_mel", "log_mel", "chunk_pool"]
    assert "int16" in rows[1]


def test_bench_ops_refuses_an_unknown_device():
    result = runner.invoke(app, ["bench", "ops", "--device", "tpu"])
    assert result.exit_code != 0
    assert "expected cpu, cuda or auto" in result.output
