"""Argilla faults: the real argilla-server 2.8 SIGKILLed in the middle of a push, then restarted on the
same port and database; the push is run again and completes with every row exactly once."""

from __future__ import annotations

import threading
import uuid

import argilla as rg
import pytest

import hfadvisor
from hfadvisor.errors import LabellingError
from hfadvisor.labelling.client import Connection
from hfadvisor.labelling.push import push
from tests.reliability.disk import committed
from tests.test_loop import Script

GROUP = "Argilla faults"
UNITS = ("a push interrupted by a server kill, then rerun", "one SIGKILL of argilla-server mid-push")
pytestmark = pytest.mark.reliability

WS = "argilla"


def record_ids(server, dataset: str) -> list[str]:
    client = rg.Argilla(api_url=server.url, api_key=server.owner_key)
    try:
        ds = client.datasets(dataset, workspace=WS)
        return [str(r.id) for r in ds.records()]
    finally:
        client.http_client.close()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("after", [3, 12, 24])
def test_server_killed_mid_push_then_restarted(tmp_path, scripted_tgi, argilla_server, tally, after):
    scripted_tgi.backend.respond = Script()  # answers each stage in its own form
    out = tmp_path / "run"
    hfadvisor.run(out, endpoints=[scripted_tgi.url], rounds=4, batch_size=6, metrics=False)
    ids = [i for rnd in committed(out).values() for i in rnd.ids]  # the run's rows, read from disk by the test
    dataset = f"outage-{uuid.uuid4().hex[:8]}"
    conn = Connection(argilla_server.url, argilla_server.owner_key)
    killed = threading.Event()

    def kill_during_the_next_batch(done: int, total: int) -> None:
        if done >= after and not killed.is_set():
            killed.set()
            threading.Timer(0.02, argilla_server.stop_server).start()  # lands while the next batch is sent

    try:
        with pytest.raises(LabellingError) as failed:
            push(out, dataset=dataset, workspace=WS, conn=conn, batch_size=3, on_batch=kill_during_the_next_batch)
    finally:
        if killed.is_set():
            while argilla_server.processes["server"].poll() is None:
                threading.Event().wait(0.05)
        restart = argilla_server.start_server()
    message = str(failed.value)
    assert "\n" not in message and argilla_server.owner_key not in message
    assert "cannot reach the Argilla server" in message or "timed out" in message or "answered HTTP" in message
    partial = record_ids(argilla_server, dataset)
    assert after <= len(partial) < len(ids) and len(set(partial)) == len(partial)

    result = push(out, dataset=dataset, workspace=WS, conn=conn, batch_size=3)
    final = record_ids(argilla_server, dataset)  # what the server holds, read with the argilla client
    tally.trial()
    tally.fault(survived=sorted(final) == sorted(ids) and killed.is_set())  # every row once: none lost, none twice
    assert (result.already, result.pushed) == (len(partial), len(ids) - len(partial))
    assert sorted(final) == sorted(ids)
    assert push(out, dataset=dataset, workspace=WS, conn=conn).pushed == 0
    tally.note(f"server SIGKILLed after {len(partial)} of {len(ids)} records; restart took {restart:.1f}s")
