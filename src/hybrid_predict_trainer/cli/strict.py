"""A typer command class whose unknown-option error lists every valid option.

Why: click only suggests a close match ("Possible options: --epochs"); for "--frob" it names
nothing. A misspelt flag should say what the command accepts.
"""
from __future__ import annotations

from typing import Any

from typer.core import TyperCommand


class StrictCommand(TyperCommand):
    """Like typer's command; an unknown option's error names all valid options."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except Exception as exc:
            # typer may vendor its own click: match the exception by name, edit its message
            if type(exc).__name__ != "NoSuchOption":
                raise
            valid = sorted({o for p in self.get_params(ctx) for o in p.opts
                            if o.startswith("-")})
            name = getattr(exc, "option_name", "?")
            message = f"No such option: {name}; valid options: {', '.join(valid)}"
            setattr(exc, "message", message)
            setattr(exc, "possibilities", None)    # click would append its own guesses
            raise
