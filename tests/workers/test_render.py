"""Tables print what the audit holds without letting it drive the terminal."""

from __future__ import annotations

import io

from rich.console import Console

from rewardq.workers.cli.render import Format, printable, render


def test_escape_codes_and_markup_in_values_are_shown_not_obeyed() -> None:
    run_id = "evil\x1b[2J\x1b]0;owned\x07\r[bold]x[/bold]"
    out = io.StringIO()
    render(
        [{"run_id": run_id}], Format.table, title=f"scores of {run_id}", console=Console(file=out, width=200)
    )
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    assert "evil\\x1b[2J\\x1b]0;owned\\x07\\r[bold]x[/bold]" in text
    assert printable("plain ü text") == "plain ü text"
