"""The command line in a pipe whose reader stops early (`finflow batches list | head`)."""

from __future__ import annotations

import argparse

import pytest

from finflow_core.cli.common import run_command


def test_a_closed_pipe_is_a_quiet_exit_141_not_an_unexpected_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def lists(ctx: object, args: argparse.Namespace) -> int:
        raise BrokenPipeError(32, "Broken pipe")  # what print() raises once head has exited

    code = run_command(argparse.Namespace(handler=lists, json=False))
    assert code == 141
    assert capsys.readouterr().err == ""  # was "finflow: error: unexpected error (BrokenPipeError..."
