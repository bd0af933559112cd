"""``av-lightning``'s front door: every command listed with one line, and each one's own --help."""

import importlib

import pytest

from av_lightning import cli


def test_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in [*cli.LIGHTNING_COMMANDS, *cli.COMMANDS]:
        line = next((ln for ln in out.splitlines() if ln.strip().startswith(name + " ")), None)
        assert line is not None and len(line.split()) > 2, f"{name} has no one-line description in:\n{out}"
    # every command module exists and answers --help
    for name in cli.COMMANDS:
        module = importlib.import_module(f"av_lightning.commands.{name.replace('-', '_')}")
        with pytest.raises(SystemExit) as exit_info:
            module.main(["--help"])
        assert exit_info.value.code == 0


def test_no_arguments_prints_usage_and_fails(capsys):
    assert cli.main([]) == 2
    assert "generate" in capsys.readouterr().out
