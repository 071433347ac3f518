"""Progress and console logs: a live bar on a terminal (a real pty), plain lines elsewhere, node/rank on every log
line, and -q/-v wherever they are written. Epoch and evaluation progress of a real run: tests/test_pipeline.py."""

from __future__ import annotations

import io
import logging
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from suite.progress import ConsoleHandler, Progress, format_duration
from tests.helpers import REPO, run_cli

MAKE_DATA = ("make-data", "--train", "24", "--val", "4", "--size", "64x64")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def progress_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="suite.progress")
    return caplog


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "suite.progress"]


def test_plain_lines_show_position_rate_and_eta(monkeypatch: pytest.MonkeyPatch,
                                                progress_log: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("ACCELBENCH_PROGRESS", "lines")
    monkeypatch.setenv("ACCELBENCH_PROGRESS_INTERVAL", "0")
    with Progress("epoch 3", 4, unit="steps") as progress:
        for step in range(4):
            time.sleep(0.05)
            progress.update(1, f"loss {1.0 / (step + 1):.2f}")
    lines = _lines(progress_log)
    # The first unit carries start-up costs: no rate or ETA until a second one is done.
    assert lines[0] == "epoch 3: 1/4 steps (25%), loss 1.00"
    assert lines[1].startswith("epoch 3: 2/4 steps (50%), ") and "steps/s, ETA 00:00, loss 0.50" in lines[1]
    rate = float(lines[3].split(", ")[1].split()[0])
    assert 5 < rate < 25  # one step per ~50 ms
    assert lines[4].startswith("epoch 3: 4 steps in 00:00 (") and lines[4].endswith("steps/s), loss 0.25")


def test_lines_come_at_the_interval_and_quick_phases_stay_quiet(monkeypatch: pytest.MonkeyPatch,
                                                                progress_log: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("ACCELBENCH_PROGRESS", "lines")
    monkeypatch.setenv("ACCELBENCH_PROGRESS_INTERVAL", "3600")
    with Progress("indexing a.json", None, unit="records") as progress:
        progress.update(500)
        progress.update(500)
    records = [r for r in progress_log.records if r.name == "suite.progress"]
    assert [(r.levelno, r.getMessage().split(" in ")[0]) for r in records] == [(logging.DEBUG,
                                                                               "indexing a.json: 1000 records")]
    with Progress("matrix", 2, unit="runs") as progress:
        progress.update(1, line=True)
    assert _lines(progress_log)[-2] == "matrix: 1/2 runs (50%)"
    assert format_duration(3725) == "1:02:05" and format_duration(65.4) == "01:05"


def test_bar_on_a_terminal_and_log_lines_around_it(monkeypatch: pytest.MonkeyPatch,
                                                   progress_log: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("ACCELBENCH_PROGRESS", raising=False)
    monkeypatch.setenv("ACCELBENCH_PROGRESS_INTERVAL", "0")
    terminal = _Terminal()
    console = ConsoleHandler(terminal)
    logger = logging.getLogger("suite.progress")
    logger.addHandler(console)
    try:
        with Progress("evaluation", 3, unit="batches", stream=terminal) as progress:
            assert progress.drawing and Progress.active is progress
            progress.update(1)
            progress.update(1)
            logging.getLogger("suite.progress").warning("a warning mid-bar")
    finally:
        logger.removeHandler(console)
    screen = terminal.getvalue()
    assert "evaluation  [" in screen and "2/3" in screen and "batches/s" in screen
    # The bar's own progress lines stay off the terminal; a real log line clears the bar's line first.
    assert "evaluation: 2/3" not in screen
    assert "\r\x1b[Ka warning mid-bar\n" in screen
    assert Progress.active is None
    assert "evaluation: 2/3 batches (67%)" in _lines(progress_log)[-3]  # the log files still get every line


def _run_in_pty(args: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    """`python -m suite ARGS` with stdin, stdout and stderr on a pseudo-terminal, as in an interactive shell."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "suite", *args], cwd=REPO, env=env, stdin=follower,
                               stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    os.close(leader)
    return process.wait(timeout=30), b"".join(chunks).decode(errors="replace")


def test_cli_draws_a_bar_on_a_terminal(tmp_path: Path) -> None:
    env = {**os.environ, "ACCELBENCH_PROGRESS": "auto", "COLUMNS": "120"}
    code, screen = _run_in_pty([*MAKE_DATA, "--out", str(tmp_path / "data")], env)
    assert code == 0, screen
    assert "generating synthetic train2017  [" in screen and "24/24" in screen and "100%" in screen
    assert "\r" in screen  # redrawn in place
    assert "images/s" in screen
    assert "wrote 24 train and 4 val images" in screen


def test_cli_prints_plain_lines_off_a_terminal_naming_node_and_rank(tmp_path: Path) -> None:
    result = run_cli(*MAKE_DATA, "--out", str(tmp_path / "data"), env={"ACCELBENCH_PROGRESS_INTERVAL": "0",
                                                                        "ACCELBENCH_PROGRESS": "auto"})
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert any(" node0/rank0 INFO suite.progress: generating synthetic train2017: 12/24 images (50%), " in line
               for line in lines), result.stderr
    assert "\r" not in result.stderr and "[#" not in result.stderr
    # torchrun's variables name the worker's node and rank
    result = run_cli(*MAKE_DATA, "--out", str(tmp_path / "data2"), env={"RANK": "3", "GROUP_RANK": "1",
                                                                         "ACCELBENCH_PROGRESS_INTERVAL": "0"})
    assert result.returncode == 0, result.stderr
    assert "generating" not in result.stderr  # ranks other than 0 keep progress to DEBUG


@pytest.mark.parametrize("flags", [("-q",), ("--quiet",)])
def test_quiet_after_the_subcommand_silences_progress(tmp_path: Path, flags: tuple[str, ...]) -> None:
    result = run_cli(*MAKE_DATA, "--out", str(tmp_path / "data"), *flags,
                     env={"ACCELBENCH_PROGRESS_INTERVAL": "0"})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "wrote 24 train" in result.stdout


def test_verbose_anywhere_reaches_debug_and_is_inherited(tmp_path: Path) -> None:
    before = run_cli("-v", "show-config", "--case", "faster_rcnn", "--vendor", "cpu")
    after = run_cli("show-config", "--case", "faster_rcnn", "--vendor", "cpu", "--verbose")
    assert before.returncode == after.returncode == 0
    quick = run_cli(*MAKE_DATA, "--out", str(tmp_path / "data"), "-v")
    assert " DEBUG suite.progress: indexing" not in quick.stderr  # make-data indexes nothing
    assert " DEBUG suite.progress: generating synthetic val2017: 4 images in " in quick.stderr, quick.stderr
    inherited = run_cli(*MAKE_DATA, "--out", str(tmp_path / "data2"), env={"ACCELBENCH_LOG_LEVEL": "DEBUG"})
    assert " DEBUG suite.progress: generating synthetic val2017" in inherited.stderr
