"""The run directory's one owner: its paths (`paths`), durable writes and the commit primitive (`files`),
the rounds (`store.RunStore`), the answers of `hfadvisor respond` (`responses`), label pulls
(`labels`), reading a run as a dataset (`dataset.load_run`), and the shared clock (`clock`).

Nothing here imports the LLM client: the Hub, export and `load_run` read runs without it.
(Not named `hfadvisor.run`: that name is the public `hfadvisor.run()` function.)
"""
