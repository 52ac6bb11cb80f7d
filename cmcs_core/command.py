"""How a command is written where a person will copy it (the app, error messages): the venv's `cmcs`
(`make install` makes it), which works as printed from the project root with nothing to activate.
"""
from __future__ import annotations

import shlex

CLI = ".venv/bin/cmcs"


def cli_command(*words: object) -> str:
    """`.venv/bin/cmcs WORD…`, each word quoted where the shell needs it."""
    return shlex.join([CLI, *map(str, words)])
