"""What every ``rewardq`` command group shares: the error handler, settings, common options."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.exceptions import TyperException

from rewardq.wire.settings import Settings
from rewardq.workers.cli.failures import debug_requested, explain
from rewardq.workers.cli.render import Format

F = TypeVar("F", bound=Callable[..., Any])

SIGPIPE_EXIT = 141
"""The exit code when the reader of stdout went away (``| head``): 128 + SIGPIPE, as a shell reports
a tool that SIGPIPE ended."""

err = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Rewards config (TOML); default REWARDQ_REWARDS.")
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]


def process_started() -> float:
    """The ``time.monotonic()`` reading of this process's start (from ``/proc`` on Linux; elsewhere now), so
    that a wait a command promises (REWARDQ_SERVE_WAIT) also covers the interpreter's start and imports."""
    now = time.monotonic()
    try:
        stat = Path("/proc/self/stat").read_text()
        started_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime, in clock ticks
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        age = uptime - started_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return now
    return now - min(max(age, 0.0), 60.0)  # bounded: a clock oddity must not make a wait vanish


def errors(fn: F) -> F:
    """Turn failures into a message naming the cause and exit code 2, not a traceback (unless
    --debug / REWARDQ_DEBUG=1); secrets in it are masked (rewardq.workers.cli.failures). A closed stdout
    (``rewardq audit scores RUN | head``) ends the command quietly with :data:`SIGPIPE_EXIT`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, TyperException):  # the command line's own exits and usage errors
            raise
        except BrokenPipeError:
            # What is still buffered for stdout goes nowhere, so the flush at exit does not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(SIGPIPE_EXIT) from None
        except Exception as e:
            if debug_requested():
                raise
            # The message is escaped: "[rewards.rm]" in it is text, not rich markup.
            err.print(
                f"[bold red]error:[/bold red] {escape(explain(e))}",
                highlight=False,
                markup=True,
                soft_wrap=True,
            )
            raise typer.Exit(2) from e

    return wrapper  # type: ignore[return-value]


class BrokerRetryNote(logging.Filter):
    """Celery's result backend logs every reconnect try ("Connection to Redis lost: Retry (n/20)") and
    a multi-line CRITICAL when it gives up. On the command line that is one line per outage saying what
    is awaited; giving up is the command's own one-line error (rewardq.connection.publish_failed)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "celery.backends.asynchronous":
            return record.levelno < logging.CRITICAL  # the give-up: the command reports it
        if not str(record.msg).startswith("Connection to Redis lost"):
            return True
        if record.args and isinstance(record.args, tuple) and record.args[0] != 0:
            return False  # a later try of the same outage
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg, record.args = "lost the result backend; waiting for the broker to come back", ()
        return True

    @classmethod
    def install(cls) -> None:
        note = cls()
        for name in ("celery.backends.redis", "celery.backends.asynchronous"):
            logging.getLogger(name).addFilter(note)


def settings(**overrides: Any) -> Settings:
    """Settings from the REWARDQ_* environment, with flags (not None) on top."""
    return Settings.from_env(**overrides)


def as_row(record: Any) -> dict[str, Any]:
    """A dataclass or mapping as a row to render."""
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return dataclasses.asdict(record)
    return dict(record)
