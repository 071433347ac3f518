"""The commands the README and CONTRIBUTING show work: every `accelbench` line parses against the real CLI (names,
options, choices), every `mlflow run` names a real entry point and parameters, every script and file exists, and
the README's Python example runs against a real store.

The commands themselves are run by other tests: smoke, run, matrix, compare, import-published, check, check-log and
sync in test_run/test_results/test_reliability, `ui` in test_ui, the example package in test_extensions, the
Projects entry points in test_run.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from suite.cli import cli
from suite.results.published import import_published, load_published
from tests.helpers import REPO

DOCS = ("README.md", "CONTRIBUTING.md")
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def _blocks(language: str) -> list[tuple[str, str]]:
    found = []
    for name in DOCS:
        for match in FENCE.finditer((REPO / name).read_text(encoding="utf-8")):
            if match.group(2) == language:
                found.append((name, match.group(3)))
    return found


def _commands() -> list[tuple[str, list[str]]]:
    """(document, argv) for each command line of the bash blocks (continuations joined, comments dropped)."""
    commands = []
    for name, block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append((name, words))
    return commands


def _accelbench_args(words: list[str]) -> list[str] | None:
    if Path(words[0]).name == "accelbench":
        return words[1:]
    if words[:3] == ["python", "-m", "suite"]:
        return words[3:]
    return None


def _parse(args: list[str]) -> None:
    """Parse like `accelbench ARGS` would, stopping before the command runs."""
    with cli.make_context("accelbench", list(args)) as context:
        if not context.protected_args and not context.args:
            return
        name, *rest = [*context.protected_args, *context.args]
        command = cli.get_command(context, name)
        assert command is not None, f"no subcommand {name!r}"
        command.make_context(name, rest, parent=context)


COMMANDS = _commands()


def test_the_docs_show_commands() -> None:
    programs = {Path(words[0]).name for _, words in COMMANDS}
    assert {"accelbench", "bash", "mlflow"} <= programs
    assert sum(_accelbench_args(words) is not None for _, words in COMMANDS) >= 20


@pytest.mark.parametrize(("document", "words"), COMMANDS, ids=[" ".join(w)[:70] for _, w in COMMANDS])
def test_command_is_real(document: str, words: list[str]) -> None:
    args = _accelbench_args(words)
    program = Path(words[0]).name
    if args is not None:
        if "--help" in args:
            assert cli.get_command(click.Context(cli), args[0]) is not None or args == ["--help"]
            return
        try:
            _parse(args)
        except click.ClickException as error:
            pytest.fail(f"{document}: `{' '.join(words)}`: {error.format_message()}")
    elif program == "bash":
        assert (REPO / words[1]).is_file(), words
    elif program == "mlflow" and words[1] == "run":
        _check_project_call(words)
    elif program == "mlflow" and words[1] == "server":
        assert words[words.index("--host") + 1] == "127.0.0.1"  # loopback only, as the text says
    elif (program == "python" and words[1:3] == ["-m", "pip"]) or program == "pip":
        # installs name the repository (the docs run them from its root) or a package from the index
        assert any((REPO / w).is_dir() for w in words if not w.startswith("-")) or "uninstall" in words, words
    elif program == "python":
        assert (REPO / words[1]).is_file(), words
    elif program == "srun":  # srun's own options, then an accelbench command line
        (start,) = [i for i, w in enumerate(words) if Path(w).name == "accelbench"]
        assert all(w.startswith("-") for w in words[1:start]), words
        _parse(words[start + 1:])
    elif program in ("export", "source", "cd"):
        return
    else:
        pytest.fail(f"{document}: no check for `{' '.join(words)}`")


def _check_project_call(words: list[str]) -> None:
    project = yaml.safe_load((REPO / "MLproject").read_text())
    entry = words[words.index("-e") + 1]
    assert entry in project["entry_points"], entry
    parameters = project["entry_points"][entry].get("parameters", {})
    given = [words[i + 1].split("=", 1)[0] for i, w in enumerate(words) if w == "-P"]
    assert set(given) <= set(parameters), (entry, given)
    assert "--env-manager" in words and words[words.index("--env-manager") + 1] == "local"


def test_python_example_runs(tracking_uri: str) -> None:
    import_published(load_published())
    ((_, code),) = [(name, block) for name, block in _blocks("python") if "from suite import results" in block]
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "nvidia_a100" in result.stdout and "p_core_vs_baseline" in result.stdout
