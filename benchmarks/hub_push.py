"""Push time and bytes per round, against the Hub-compatible test server on 127.0.0.1.

    python -m benchmarks.hub_push [--rounds 20] [--batch-size 12]   # from the repository root

Makes one run with the scripted TGI server (answers by call seed; metrics off), then
`push_run` to a fresh repo of `tests/servers/hub.py` through the unmodified huggingface_hub
client, and prints per round: rows, file bytes in the commit, bytes on the wire (every
request of the round: validate-yaml, preupload, LFS batch + upload, commit, tag), the LFS
part, and seconds (commit + tag). Also times the same run with `--push-to-hub` against
without, to show what pushing adds to a run. Local server: no WAN latency is included.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=12)
    args = ap.parse_args()

    from tests.servers.hub import HubServer

    hub = HubServer().start()
    home = Path(tempfile.mkdtemp(prefix="hfadvisor-hub-bench-"))
    os.environ.update(
        HF_ENDPOINT=hub.url,
        HF_TOKEN=hub.token or "",
        HF_HUB_DISABLE_XET="1",
        HF_HOME=str(home / "hf"),
        NO_PROXY="127.0.0.1,localhost",
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    import hfadvisor
    from hfadvisor.hub import PushedRound, push_run
    from tests.servers.tgi import ScriptedBackend, running_tgi

    def respond(req) -> str:
        seed = req.seed or 0
        if "One more" in req.prompt or "Which harm category is not covered" in req.prompt:
            return f" Weakness number {seed % 100_000}\n"
        if "New list" in req.prompt or "Update the summary" in req.prompt:
            return f" Category {seed % 100_000}\n"
        return f" How would someone carry out harmful plan number {seed}?\n"

    backend = ScriptedBackend()
    backend.respond = respond
    common = {"rounds": args.rounds, "batch_size": args.batch_size, "metrics": False}
    with running_tgi(backend) as tgi:
        t0 = time.monotonic()
        store = hfadvisor.run(home / "plain", endpoints=[tgi.url], **common)
        plain = time.monotonic() - t0
        t0 = time.monotonic()
        hfadvisor.run(home / "pushed", endpoints=[tgi.url], push_to_hub="hf-tester/bench-live", **common)
        live = time.monotonic() - t0

    hub.requests.clear()
    pushed: list[PushedRound] = []
    t0 = time.monotonic()
    push_run(home / "plain", "hf-tester/bench", on_round=pushed.append)
    total = time.monotonic() - t0

    # split the request log into rounds: each round's requests end with its tag
    wire: list[int] = []
    lfs: list[int] = []
    current, current_lfs = 0, 0
    for req in hub.requests:
        current += req.request_bytes
        current_lfs += req.request_bytes if req.route == "lfs_upload" else 0
        if req.route == "create_tag":
            wire.append(current)
            lfs.append(current_lfs)
            current, current_lfs = 0, 0
    setup = current  # nothing after the last tag: the reads at start are in round 0's share

    print(f"{'round':>5} {'rows':>5} {'file B':>8} {'wire B':>8} {'LFS B':>7} {'seconds':>8}")
    for p, w, lb in zip(pushed, wire, lfs, strict=True):
        print(f"{p.round:>5} {store.index[p.round].rows:>5} {p.bytes:>8} {w:>8} {lb:>7} {p.seconds:>8.3f}")
    later = pushed[1:]
    secs = [p.seconds for p in later]
    print(
        f"rounds 1..{args.rounds}: median {statistics.median(secs):.3f}s, max {max(secs):.3f}s per round; "
        f"file bytes {min(p.bytes for p in later)}..{max(p.bytes for p in later)}, "
        f"wire bytes {min(wire[1:])}..{max(wire[1:])} per round; whole push {total:.2f}s ({setup} B after the last tag)"
    )
    print(
        f"run of {args.rounds} rounds: {plain:.2f}s without pushing, {live:.2f}s with --push-to-hub "
        f"(+{(live - plain) / (args.rounds + 1):.3f}s per round)"
    )
    hub.stop()
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
