"""Printing user-facing text with rich, literally.

Why: messages name TOML tables such as ``[run]``; rich would read those as markup tags and
drop them. Everything dynamic goes through these helpers (markup off, no wrapping).
"""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape


def say(console: Console, text: str, style: str | None = None) -> None:
    """Print ``text`` as is (no markup, no highlighting, long lines not broken)."""
    console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)


def error(console: Console, exc: BaseException | str) -> None:
    """Print 'error: <message>' with the message verbatim."""
    console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
