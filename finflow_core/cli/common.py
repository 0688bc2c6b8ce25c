"""What every command shares: config, store, the acting user, output and error handling."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from finflow_core.errors import AuthError, FinFlowError
from finflow_core.lending.config import Config, load_config
from finflow_core.services.context import Context as ServiceContext
from finflow_core.services.sessions import Gate
from finflow_core.services.workbench import Workbench

ENV_USER = "FINFLOW_USER"
ENV_PASSWORD = "FINFLOW_PASSWORD"
ENV_NEW_PASSWORD = "FINFLOW_NEW_PASSWORD"
#: Exit code when the reader of the output closed it (128 + SIGPIPE, as a shell reports it).
PIPE_CLOSED = 141
ENV_DEBUG = "FINFLOW_DEBUG"  # 1: print the traceback of an unexpected error too

Handler = Callable[["Context", argparse.Namespace], int]
#: The largest count an option takes (rows, days, chunk rows, partitions).
MAX_COUNT = 1_000_000_000


def count(text: str) -> int:
    """An option that counts something: a whole number from 1 to :data:`MAX_COUNT` (0 rows per
    chunk looped for ever; 0 or -5 demo rows and 10**20 were "unexpected error", exit 1)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 1 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_COUNT:,}, got {text}")
    return value


@dataclass
class Context:
    """Lazily opened resources of one command run."""

    args: argparse.Namespace
    password: str = ""

    @cached_property
    def config(self) -> Config:
        config = load_config(self.args.config)
        for warning in config.warnings:  # e.g. a feature whose name suggests a protected trait
            print(f"finflow: config warning: {warning}", file=sys.stderr)
        return config

    @cached_property
    def services(self) -> ServiceContext:
        """The installation's services (its store opened with the guards the app has too)."""
        from finflow_core.services.maintenance import open_context

        return open_context(self.config)

    @cached_property
    def gate(self) -> Gate:
        return Gate(self.services)

    @cached_property
    def workbench(self) -> Workbench:
        """The signed-in user's services: --user / $FINFLOW_USER, password from
        $FINFLOW_PASSWORD or a prompt."""
        username = self.args.user or os.environ.get(ENV_USER)
        if not username:
            raise AuthError(
                "this command needs a signed-in user: pass --user NAME (or set "
                "FINFLOW_USER) with the password in FINFLOW_PASSWORD. No user yet? Create the "
                "first admin with `finflow users add NAME --role admin`.",
                reason="no_user",
            )
        self.password = os.environ.get(ENV_PASSWORD)
        if self.password is None:
            if not sys.stdin.isatty():
                raise AuthError(
                    f"no password for {username!r}: set FINFLOW_PASSWORD or run in a terminal",
                    reason="no_password",
                )
            self.password = getpass.getpass(f"password for {username}: ")
        return self.gate.sign_in(username, self.password)

    def close(self) -> None:
        if "services" in self.__dict__:
            self.services.store.close()


def emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    """Print JSON with --json (strict: a NaN or infinite figure is null), else the human text."""
    if getattr(args, "json", False):
        from finflow_core.lending.model.bundle import json_safe

        print(json.dumps(json_safe(payload), indent=2, default=str))
    else:
        print(text)


def run_command(args: argparse.Namespace) -> int:
    """Run a command: one message and a documented exit code for anything that goes wrong."""
    ctx = Context(args)
    handler: Handler = args.handler
    code: int | None = None
    try:
        code = handler(ctx, args)
        sys.stdout.flush()  # a closed pipe shows here, while it can still be handled
        return code
    except BrokenPipeError:
        # the reader stopped reading (``finflow models show | head``): end quietly, like any
        # Unix tool. The output is cut, not the work (commands print after it): a command
        # that had finished keeps its own exit code
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return PIPE_CLOSED if code is None else code
    except KeyboardInterrupt:
        print("finflow: interrupted: nothing was stored for the unfinished step", file=sys.stderr)
        return 130
    except BaseException as exc:  # noqa: BLE001 - every failure becomes one message
        return report_failure(args, exc)
    finally:
        with contextlib.suppress(Exception):  # closing must not hide the real outcome
            ctx.close()


def report_failure(args: argparse.Namespace, exc: BaseException) -> int:
    """Print a failure as ``finflow: error: ...`` (and JSON with --json); its exit code."""
    from finflow_core.services.files import as_fault

    if isinstance(exc, SystemExit):
        raise exc
    fault = exc if isinstance(exc, FinFlowError) else as_fault(exc)
    if fault is None:
        if os.environ.get(ENV_DEBUG) == "1":
            traceback.print_exception(exc, file=sys.stderr)
        message = (f"unexpected error ({type(exc).__name__}: {str(exc)[:300]}); nothing of the "
                   f"unfinished step was stored. Set {ENV_DEBUG}=1 for the details to report it.")
        if getattr(args, "json", False):
            print(json.dumps({"error": type(exc).__name__, "message": message}), file=sys.stderr)
        print(f"finflow: error: {message}", file=sys.stderr)
        return 1
    if getattr(args, "json", False):
        print(json.dumps(fault.to_dict(), default=str), file=sys.stderr)
    print(f"finflow: error: {fault.message}", file=sys.stderr)
    return fault.exit_code


def ask_password(prompt: str, *, confirm: bool = True) -> str:
    """A new password from $FINFLOW_NEW_PASSWORD or typed twice at a prompt."""
    password = os.environ.get(ENV_NEW_PASSWORD)
    if password is not None:
        return password
    if not sys.stdin.isatty():
        raise AuthError("set FINFLOW_NEW_PASSWORD or run in a terminal to type the new password",
                        reason="no_password")
    first = getpass.getpass(prompt)
    if confirm and getpass.getpass("again: ") != first:
        raise AuthError("the two passwords differ", reason="mismatch")
    return first
