"""The ``hpt`` command line (typer + rich). ``Task`` and ``RunContext`` are what an entry
point named in ``[run] entry`` returns and receives."""
from .task import RunContext, Task

__all__ = ["Task", "RunContext"]
