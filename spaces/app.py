"""The hfadvisor Space: the entry point Hugging Face Spaces runs (also `python spaces/app.py` locally).

Public-Space settings: visitors open Hub dataset repos (not server paths), their token is used
for their session only, and the owner's HF_TOKEN is removed from the process so no visitor's
endpoint or repo request can borrow it. The runs shown on load are the ones bundled in `example-runs/`
(made with the embedded model), or `HFADVISOR_SPACE_RUNS` (comma-separated public repo ids).
"""

from __future__ import annotations

import os
from pathlib import Path

from hfadvisor.space import SpaceOptions, build_app, forget_server_token, launch_kwargs

HERE = Path(__file__).resolve().parent


def options() -> SpaceOptions:
    configured = [s.strip() for s in os.environ.get("HFADVISOR_SPACE_RUNS", "").split(",") if s.strip()]
    bundled = {
        f"example: {name}": HERE / "example-runs" / name
        for name in ("advisor", "baseline")
        if (HERE / "example-runs" / name).is_dir()
    }
    opts = SpaceOptions.public_space(configured or list(bundled))
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
