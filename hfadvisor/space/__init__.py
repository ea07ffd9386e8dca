"""The hfadvisor Space: watch a run round by round, compare runs, start a small run (Gradio).

`build_app(SpaceOptions(...))` returns the `gr.Blocks`; launch it with `launch_kwargs()`.
`spaces/app.py` (the deployable Hugging Face Space) and `hfadvisor space` both use it;
`publish.publish_space` deploys it to the Hub. Modules: `sources` (open a run), `data` (what is
shown), `plots`, `live` (runs started from the page), `state` (options, session), `guard`
(errors, tokens), `tabs/` (one module per tab), `api` (gradio_client endpoints), `app`.
Gradio is imported only when the app is built, so `hfadvisor.space.data` works without it.
"""

from __future__ import annotations

from hfadvisor.space.app import SpaceOptions, build_app, forget_server_token, launch_kwargs

__all__ = ["SpaceOptions", "build_app", "forget_server_token", "launch_kwargs"]
