"""The command's output when its reader goes away (``finflow ... | head``): no traceback, no
"unexpected error", and the exit code says what happened to the work."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from finflow_core.cli import main
from finflow_core.cli.common import PIPE_CLOSED


class ClosedPipe(io.StringIO):
    """Standard output whose reader has gone: writing (or only flushing) fails as a pipe does."""

    def __init__(self, fd: int, *, on_write: bool) -> None:
        super().__init__()
        self.fd, self.on_write = fd, on_write
        self.flushes = 0

    def write(self, s: str) -> int:
        if self.on_write:
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(s)

    def flush(self) -> None:
        self.flushes += 1
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self) -> int:
        return self.fd


@pytest.mark.parametrize("on_write", [True, False], ids=["print fails", "flush fails"])
def test_a_closed_output_pipe_ends_quietly_after_the_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    on_write: bool,
) -> None:
    out = tmp_path / "week.csv"
    sink = os.open(tmp_path / "stdout", os.O_WRONLY | os.O_CREAT)
    pipe = ClosedPipe(sink, on_write=on_write)
    monkeypatch.setattr("sys.stdout", pipe)
    code = main(["demo-data", "--rows", "50", "--seed", "3", "--out", str(out)])
    os.close(sink)
    err = capsys.readouterr().err
    assert "error" not in err and "Traceback" not in err
    # the work was done either way; a command whose own print failed cannot report its code
    assert out.exists() and len(out.read_text().splitlines()) == 51
    assert code == (PIPE_CLOSED if on_write else 0)
    # a pipe closed after the last print is found inside the command, not at the
    # interpreter's exit (where Python prints "Exception ignored ... BrokenPipeError")
    assert on_write or pipe.flushes >= 1


@pytest.mark.parametrize("argv", [
    ["demo-data", "--out", "x.csv", "--rows", "0"],  # was exit 1, "unexpected error"
    ["demo-data", "--out", "x.csv", "--rows", "99999999999999999999"],  # OverflowError, exit 1
    ["demo-data", "--out", "x.csv", "--days", "-3"],  # was accepted
    ["weekly-run", "--data", "x.csv", "--chunk-rows", "0"],  # looped for ever
    ["setup", "--rows", "-5"],
])
def test_a_count_option_out_of_range_is_a_bad_command_line(
    argv: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    with pytest.raises(SystemExit) as ended:
        main([a if a != "x.csv" else str(tmp_path / a) for a in argv])
    err = capsys.readouterr().err
    assert ended.value.code == 2 and "must be from 1 to 1,000,000,000" in err
    assert not (tmp_path / "x.csv").exists()
