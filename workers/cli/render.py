"""Printing rows for people (a rich table) and for programs (CSV, JSON lines).

A table is as wide as the terminal when stdout is one; piped or redirected, it is as wide as its
values, so hashes and ids stay whole on one line (``grep`` finds them) instead of folding at 80 columns.
"""

from __future__ import annotations

import csv
import enum
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

UNWRAPPED_WIDTH = 1_000_000
"""The console width off a terminal: wider than any row, so nothing is folded (tables take their
values' width, not this)."""


class Format(enum.StrEnum):
    table = "table"
    csv = "csv"
    jsonl = "jsonl"


def printable(text: str) -> str:
    """``text`` safe to print in a table: control characters (terminal escape codes, carriage returns)
    shown as ``\\x1b``-style escapes, and rich markup shown as text."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return escape(text)


class _StdoutConsole(Console):
    def on_broken_pipe(self) -> None:
        """Leave a closed stdout (``| head``) to the command line, as every other write to it
        (rewardq.workers.cli.common.errors), instead of rich's own ``SystemExit(1)``."""
        raise BrokenPipeError


def stdout_console() -> Console:
    """The console for stdout: the terminal's width on a terminal, no wrapping anywhere else."""
    return _StdoutConsole() if sys.stdout.isatty() else _StdoutConsole(width=UNWRAPPED_WIDTH)


def _cell(value: Any) -> str:
    return printable(_text(value))


def _text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value + 0.0:.4g}"  # + 0.0 prints -0.0 as 0
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return " ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def render(
    rows: Sequence[Mapping[str, Any]],
    fmt: Format,
    *,
    title: str | None = None,
    console: Console | None = None,
) -> None:
    """Write ``rows`` to stdout in ``fmt``; the columns are the first row's keys."""
    if fmt is Format.jsonl:
        for row in rows:
            sys.stdout.buffer.write(orjson.dumps(row, default=str, option=orjson.OPT_APPEND_NEWLINE))
        sys.stdout.flush()
        return
    columns = list(rows[0]) if rows else []
    if fmt is Format.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else _csv_cell(row.get(c)) for c in columns])
        return
    console = console or stdout_console()
    if not rows:
        console.print(f"[dim]{printable(title or 'nothing')}: no rows[/dim]")
        return
    table = Table(title=printable(title) if title else None, show_lines=False)
    for c in columns:
        table.add_column(c, overflow="fold")
    for row in rows:
        table.add_row(*(Text(_cell(row.get(c))) for c in columns))  # values are data, never markup
    console.print(table)


def _csv_cell(value: Any) -> str:
    if isinstance(value, list | tuple | Mapping):
        return orjson.dumps(value, default=str).decode()
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
