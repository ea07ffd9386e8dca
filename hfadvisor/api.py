"""The Python API under the CLI: plan a run (validate everything, write nothing), then execute it.

import hfadvisor
hfadvisor.run("runs/safety", rounds=20, endpoints=["http://my-tgi:8080"])
ds = hfadvisor.load_run("runs/safety", round=7)   # rows of rounds 0..7
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hfadvisor import __version__, card
from hfadvisor.aio import run_sync
from hfadvisor.config import RunConfig, build_config, config_hash, load_config_file
from hfadvisor.errors import HFAdvisorError, RunStateError, scrub
from hfadvisor.llm import EndpointSpec, connect
from hfadvisor.loop import Observer, Runner
from hfadvisor.plugins import build_plugins
from hfadvisor.presets import Preset, load_preset
from hfadvisor.records import PoolEntry, Revision, RevisionIndex, RunInfo, Session
from hfadvisor.rundir.clock import now
from hfadvisor.rundir.dataset import load_run  # noqa: F401 (part of the API here too)
from hfadvisor.rundir.files import is_temp
from hfadvisor.rundir.store import RunStore, record_session

EMBEDDED_DEFAULTS: dict[str, Any] = {
    "sampling": {"generate": {"max_new_tokens": 96}, "selfinstruct": {"max_new_tokens": 96}}
}


@dataclass
class Plan:
    """A validated run, not yet started: `store` is None until the run directory is created."""

    output: Path
    config: RunConfig
    preset: Preset
    info: RunInfo
    store: RunStore | None

    @property
    def card_template(self) -> Path | None:
        return Path(self.config.card_template) if self.config.card_template else None


def _diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(_diff(a, b, f"{prefix}{key}."))
        elif a != b:
            out.append(f"{prefix}{key} {a!r} → {b!r}")
    return out


def _concretize(config: RunConfig) -> RunConfig:
    """Fix derived defaults (prompt style, examples per prompt) so the stored method is explicit."""
    return config.model_copy(
        update={
            "prompt_style": config.effective_prompt_style,
            "examples_per_prompt": config.effective_examples_per_prompt,
        }
    )


def plan_run(
    output: str | Path, *, mode: str = "advisor", config_file: str | Path | None = None, **overrides: Any
) -> Plan:
    """Resolve flags + YAML (+ the stored run when resuming) and validate everything; writes nothing."""
    out = Path(output)
    file_layer = load_config_file(config_file) if config_file else {}
    flags = {k: v for k, v in overrides.items() if v is not None}
    if RunStore.exists(out):
        store = RunStore.open(out)
        info = store.info
        if info.mode != mode:
            cmd = "run" if info.mode == "advisor" else "baseline"
            raise RunStateError(f"{out} is a {info.mode} run: continue it with `hfadvisor {cmd} {out}`")
        planned = {"rounds": store.last.rounds_planned} if store.last and store.last.rounds_planned else {}
        config = build_config(
            info.method, planned, file_layer, flags, {"mode": mode}, source=str(config_file or "flags")
        )
        config = _concretize(config)
        changed = _diff({**RunConfig.METHOD_ADDED, **info.method}, config.method_dict())
        if changed:
            raise RunStateError(
                f"{out} was made with a different configuration ({'; '.join(changed[:3])}): "
                "drop those options to resume it, or start a new --output directory"
            )
        preset = Preset.model_validate(info.preset)
        plan = Plan(out, config, preset, info, store)
        if plan.card_template and store.last:  # a broken template fails now, not after a round's generations
            card.render(
                info,
                store.last,
                store.index,
                rounds_planned=config.rounds,
                ledger_total=store.last.ledger,
                template=plan.card_template,
            )
        return plan
    if out.exists() and (not out.is_dir() or any(not is_temp(f) for f in out.iterdir())):  # a killed start's temp
        raise RunStateError(f"{out} exists and is not an hfadvisor run: choose an empty or new --output directory")
    # The embedded model batches generations, so one runaway row holds the whole batch: cap
    # lengths lower than the paper's 512/256 (queries are one line anyway). Recorded in the config.
    embedded = {} if (flags.get("endpoints") or file_layer.get("endpoints")) else EMBEDDED_DEFAULTS
    config = _concretize(build_config(embedded, file_layer, flags, {"mode": mode}, source=str(config_file or "flags")))
    preset = load_preset(config.preset, config.seed_summary, config.seed_pool, config.prompts)
    method = config.method_dict()
    preset_data = preset.model_dump(mode="json")
    info = RunInfo(
        run_id=uuid.uuid4().hex,
        created_at=now(),
        hfadvisor_version=__version__,
        mode=mode,
        config_hash=config_hash({"method": method, "preset": preset_data}),
        method=method,
        preset=preset_data,
    )
    plan = Plan(out, config, preset, info, None)
    seed_round(plan, dry_run=True)  # renders the card: a broken template fails here, before any write
    return plan


def seed_round(plan: Plan, *, dry_run: bool = False) -> RunStore | None:
    """Round 0: the seed pool as rows, the seed summary as the starting summary."""
    info, preset = plan.info, plan.preset
    prefix = info.run_id[:8]
    rows = [
        {
            "id": f"{prefix}-00000-{i:03d}",
            "round": 0,
            "slot": i,
            "prompt": ex.prompt,
            "weakness": ex.category,
            "source": "seed",
            "model": "seed",
            "exemplar_ids": [],
        }
        for i, ex in enumerate(preset.seed)
    ]
    pool = [PoolEntry(id=r["id"], prompt=r["prompt"], category=r["weakness"]) for r in rows]
    ts = now()
    rev = Revision(
        round=0,
        mode=info.mode,
        shard="data/round-00000.parquet",
        rows=len(rows),
        sha256="",
        rejects_shard="rejects/round-00000.parquet",
        rejects=0,
        rejects_sha256="",
        card="cards/round-00000.md",
        summary_before=[],
        summary_after=preset.seed_summary if info.mode == "advisor" else [],
        summary_source="seed",
        pool_added=pool,
        pool_size=len(pool),
        rounds_planned=plan.config.rounds,
        config_hash=info.config_hash,
        model="seed",
        started_at=ts,
        finished_at=ts,
    )
    text = card.render(
        info,
        rev,
        [RevisionIndex.of(rev)],
        rounds_planned=plan.config.rounds,
        ledger_total=rev.ledger,
        template=plan.card_template,
    )
    if dry_run:
        return None
    store = RunStore.create(plan.output, info)
    store.commit_round(rev, rows, [], text)
    return store


@contextlib.contextmanager
def _endpoints(config: RunConfig) -> Iterator[tuple[list[str], bool]]:
    if config.endpoints:
        yield config.endpoints, False
        return
    from hfadvisor.serve.process import embedded_endpoint

    with embedded_endpoint() as url:
        yield [url], True


async def execute(plan: Plan, observer: Observer | None = None, *, token: str | None = None) -> RunStore:
    """Connect to the endpoints, create the run directory if new, and run the remaining rounds.

    `token` is sent to the endpoints instead of the process's login (HF_TOKEN / stored login):
    a web app serving several people passes the token each person typed.
    """
    from huggingface_hub import get_token

    config = plan.config
    plugins = build_plugins(config)  # a missing optional dependency fails here, before any write
    with _endpoints(config) as (urls, embedded):
        if embedded:
            token = None
        elif token is None:
            token = get_token()
        # fails fast, before anything is written: unreachable, unserved --model, ...
        async with connect(EndpointSpec.from_config(config, urls, token)) as endpoint:
            client, model = endpoint.client, endpoint.model
            for plugin in plugins:
                plugin.preflight(plan.info)
            # a run killed between run.json and round 0's revision has no round yet: write round 0 now
            store = plan.store if plan.store is not None and plan.store.rounds_done else seed_round(plan)
            assert store is not None
            plan.store = store
            runner = Runner(store, config, plan.preset, endpoint, model, observer, plan.card_template, plugins)
            attach = getattr(observer, "attach", None)
            if attach:
                attach(client.ledger, sum(i.rows for i in store.index), store.rounds_done)
            rounds_before, started = store.rounds_done, now()
            outcome, message = "completed", ""
            try:
                await runner.run()
            except HFAdvisorError as e:
                outcome, message = "stopped", str(e)
                raise
            except (KeyboardInterrupt, asyncio.CancelledError):
                outcome = "interrupted"
                raise
            except Exception as e:
                outcome, message = "failed", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                raise
            finally:
                for plugin in plugins:
                    await plugin.close()
                if client.ledger.attempts or store.rounds_done > rounds_before:
                    record_session(
                        store.path,
                        Session(
                            started_at=started,
                            finished_at=now(),
                            outcome=outcome,
                            message=scrub(message, token),
                            rounds_committed=list(range(rounds_before, store.rounds_done)),
                            model=model,
                            endpoints=client.endpoint_names,
                            hfadvisor_version=__version__,
                            ledger=client.ledger,
                        ),
                    )
            return store


def run(
    output: str | Path,
    *,
    mode: str = "advisor",
    config_file: str | Path | None = None,
    observer: Observer | None = None,
    **overrides: Any,
) -> RunStore:
    """Start or resume a run in `output` (blocking). Keyword overrides are RunConfig fields."""
    plan = plan_run(output, mode=mode, config_file=config_file, **overrides)
    return run_sync(execute(plan, observer))
