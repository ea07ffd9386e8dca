"""hfadvisor: safety-alignment datasets with the Data Advisor loop, native to the Hugging Face ecosystem.

The API is imported on first use (PEP 562), so `import hfadvisor.hub` or `hfadvisor.load_run`
do not load the LLM client, the loop and their dependencies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from hfadvisor.api import plan_run, run
    from hfadvisor.config import RunConfig
    from hfadvisor.rundir.dataset import load_run

_LAZY = {
    "run": "hfadvisor.api",
    "plan_run": "hfadvisor.api",
    "RunConfig": "hfadvisor.config",
    "load_run": "hfadvisor.rundir.dataset",
}

__all__ = ["RunConfig", "__version__", "load_run", "plan_run", "run"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'hfadvisor' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
