"""distilabel's TextGeneration over a list of prompts, against the latency server (P2 comparison).

Runs in distilabel's own virtualenv (its pins differ from hfadvisor's), so it imports nothing
from hfadvisor. Usage: `VENV/bin/python benchmarks/distilabel_job.py '{"url": ..., "file": ...}'`
→ one `RESULT {json}` line. distilabel is given its best setting for this endpoint:
`input_batch_size` = the endpoint's capacity, so a batch fills every slot at once.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
import warnings
from typing import Any


def main() -> None:
    a: dict[str, Any] = json.loads(sys.argv[1])
    warnings.filterwarnings("ignore")
    t_import = time.monotonic()
    from distilabel.models.llms import OpenAILLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts
    from distilabel.steps.tasks import TextGeneration

    with open(a["file"], encoding="utf-8") as f:
        prompts = json.load(f)
    t0 = time.monotonic()
    cpu0 = time.process_time()
    with tempfile.TemporaryDirectory() as cache:
        with Pipeline(name="hfadvisor-bench", cache_dir=cache) as pipeline:
            load = LoadDataFromDicts(data=[{"instruction": p} for p in prompts], batch_size=a["batch"])
            gen = TextGeneration(
                llm=OpenAILLM(
                    model="bench/latency",
                    base_url=f"{a['url']}/v1",
                    api_key="not-a-secret",
                    timeout=600,
                    generation_kwargs={"max_new_tokens": a["max_tokens"], "temperature": 0.9, "top_p": 0.95},
                ),
                input_batch_size=a["batch"],
            )
            load >> gen
        distiset = pipeline.run(use_cache=False)
        t1 = time.monotonic()
        rows = distiset["default"]["train"]
        answered = sum(1 for g in rows["generation"] if g)
    # CPU of this process and its worker processes (distilabel runs steps in subprocesses), after imports
    used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in used) - cpu0
    result = {"wall": t1 - t0, "import": t0 - t_import, "rows": len(rows), "answered": answered, "cpu_run": cpu}
    sys.stdout.write("\nRESULT " + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
