"""The hfadvisor Space: the entry point Hugging Face Spaces runs (also `python spaces/app.py` locally).

Public-Space settings: visitors open Hub dataset repos (not server paths), their token is used
for their session only, and the owner's HF_TOKEN is removed from the process so no visitor's
endpoint or repo request can borrow it. The runs shown on load: `HFADVISOR_SPACE_RUNS`
(comma-separated public repo ids), else the ones `hfadvisor-space.json` names (written by
`hfadvisor space publish`), else the ones bundled in `example-runs/` (made with the embedded model).

A Space made by `hfadvisor space publish` ships hfadvisor as a wheel beside this file; the Space
builder installs requirements.txt before the repository's files exist, so the wheel is installed
here, at start, into `.hfadvisor-lib/` (no dependencies: requirements.txt brought them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "hfadvisor-space.json"


def use_shipped_wheel() -> None:
    """Install the hfadvisor wheel shipped beside this file (if any) and import it first."""
    wheels = sorted(HERE.glob("hfadvisor-*.whl"))
    if not wheels:
        return  # a checkout or an installed hfadvisor: use that
    wheel = wheels[-1]
    for lib in (HERE / ".hfadvisor-lib", Path(tempfile.gettempdir()) / "hfadvisor-lib"):
        marker = lib / f"{wheel.name}.installed"
        try:
            if not marker.is_file():
                cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--upgrade", "--quiet"]
                subprocess.run([*cmd, "--target", str(lib), str(wheel)], check=True)
                marker.write_text("ok\n")
        except (OSError, subprocess.CalledProcessError):
            continue  # not writable here: try the next place
        sys.path.insert(0, str(lib))
        return
    raise SystemExit(f"cannot install {wheel.name}: neither {HERE} nor the temp dir is writable")


use_shipped_wheel()

from hfadvisor.space import SpaceOptions, build_app, forget_server_token, launch_kwargs  # noqa: E402


def configured_runs() -> list[str]:
    from_env = [s.strip() for s in os.environ.get("HFADVISOR_SPACE_RUNS", "").split(",") if s.strip()]
    if from_env or not CONFIG.is_file():
        return from_env
    return [str(r) for r in json.loads(CONFIG.read_text(encoding="utf-8")).get("runs", [])]


def options() -> SpaceOptions:
    bundled = {
        f"example: {name}": HERE / "example-runs" / name
        for name in ("advisor", "baseline")
        if (HERE / "example-runs" / name).is_dir()
    }
    opts = SpaceOptions.public_space(configured_runs() or list(bundled))
    opts.named = bundled
    opts.max_rounds = int(os.environ.get("HFADVISOR_SPACE_MAX_ROUNDS", "6"))
    opts.max_batch_size = int(os.environ.get("HFADVISOR_SPACE_MAX_BATCH", "12"))
    return opts


forget_server_token()
demo = build_app(options())

if __name__ == "__main__":
    demo.queue(default_concurrency_limit=4).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"), **launch_kwargs()
    )
