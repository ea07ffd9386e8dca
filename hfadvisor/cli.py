"""`hfadvisor` command line: a thin layer over `hfadvisor.api`, one module per command group.

The commands live in `hfadvisor/commands/<group>.py`, each with `register(app)`; shared options
and the error line live in `hfadvisor/commands/_common.py`. Every user-fixable problem ends as
one line on stderr and exit code 2; Ctrl-C exits 130 with every complete round kept.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys

from hfadvisor import commands
from hfadvisor.commands._common import err, group
from hfadvisor.errors import HFAdvisorError

app = group(
    "hfadvisor",
    "Build safety-alignment datasets with the Data Advisor loop; every round a dataset revision.",
)

# `--help` lists the commands in this order; groups not named here follow, alphabetically.
ORDER = (
    "run",
    "serve",
    "hub",
    "label",
    "respond",
    "export",
    "train",
    "evaluate",
    "compare",
    "report",
    "space",
    "config",
)


def _register_command_groups() -> None:
    """Every public module in `hfadvisor/commands/` registers its commands (`_`-prefixed ones are helpers)."""
    found = {m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")}
    for name in [n for n in ORDER if n in found] + sorted(found - set(ORDER)):
        importlib.import_module(f"hfadvisor.commands.{name}").register(app)


_register_command_groups()


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except HFAdvisorError as e:  # pragma: no cover - commands catch their own
        err.print(f"error: {e}", markup=False)
        sys.exit(e.exit_code)
