"""The `downpour` group: help lists the commands, --version."""

from __future__ import annotations

import re

from click.testing import CliRunner

from downpour import __version__
from downpour.cli.main import cli


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_help_lists_the_commands() -> None:
    code, out = invoke("--help")
    assert code == 0
    assert "Usage:" in out
    listed = re.findall(r"^  (\w+)\s{2,}\S", out.split("Commands:")[1], flags=re.M)
    assert {"prepare", "demo", "config"} <= set(listed)


def test_version() -> None:
    code, out = invoke("--version")
    assert code == 0
    assert out.strip() == f"downpour, version {__version__}"
