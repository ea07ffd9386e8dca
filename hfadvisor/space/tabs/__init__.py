"""The Space's tabs, one module each: `explore` (a run round by round), `compare` (two runs side by
side), `start` (a small run started and watched from the page).

Each module has its handlers at module level (options and session passed explicitly), a
`layout(opts)` that creates its components inside the current `gr.Tab`, and a `wire(...)` that
connects its own events. `hfadvisor.space.app.build_app` assembles them and wires what crosses
tabs. Importing a tab imports Gradio.
"""
