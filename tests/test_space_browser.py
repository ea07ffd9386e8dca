"""The Space in a real browser (Playwright driving Debian's chromium) and through gradio_client.

The app runs as `python -m hfadvisor space ...` in a child process on a free port (its own
stdout/stderr are the server log the secrets checks read); runs are made over real HTTP
against the scripted TGI server. Screenshots go to test-artifacts/space/.
"""

from __future__ import annotations

import re
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from hfadvisor.rundir.store import RunStore
from hfadvisor.serve.backend import GenerationRequest
from hfadvisor.space import data
from tests.servers.tgi import ScriptedBackend, running_tgi
from tests.test_space_support import BROWSER_ARGS, SCRIPT_PROMPT, ScriptedModel, shared_runs, space_process

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "space"
SESSION_TOKEN = "hf_sessionSECRET_7f3a9c2e1b"
expect.set_options(timeout=30_000)  # a waiting limit, not a timing assertion: the 2 cores are shared


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return shared_runs(tmp_path_factory.getbasetemp() / "space-runs")


@pytest.fixture(scope="module")
def space(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path | str]]:
    root = tmp_path_factory.mktemp("space-app")
    log = root / "server.log"
    args = [str(runs["advisor"]), "--compare", str(runs["baseline"]), "--runs-dir", str(root / "started")]
    with space_process(args, log) as url:
        yield {"url": url, "log": log, "started": root / "started"}


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[object]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, space) -> Iterator[object]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 1200}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(str(space["url"]))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


def cells(pg, elem_id: str) -> list[list[str]]:
    """The rows of a Gradio Dataframe as shown (cell texts)."""
    return pg.evaluate(
        """(id) => Array.from(document.querySelectorAll(`#${id} [role=row].virtual-row`)).map(
            r => Array.from(r.querySelectorAll('[role=gridcell]')).map(c => c.innerText.trim()))""",
        elem_id,
    )


def wait_for_table(pg, elem_id: str, first_cell: str) -> list[list[str]]:
    expect(pg.locator(f"#{elem_id} [data-testid=cell-0-0]")).to_have_text(first_cell)
    return cells(pg, elem_id)


def shown_weakness(rev) -> str:
    return data.weakness_text(rev)


def wait_loaded(pg, run: Path) -> None:
    """The page has drawn the run's last round (what it opens at)."""
    view = data.open_local(run)
    expect(pg.locator("#weakness textarea")).to_have_value(shown_weakness(view.revisions[-1]))
    wait_for_table(pg, "samples", data.samples(view, view.last_round)["id"].iloc[0])


def test_step_through_rounds_weakness_and_samples_match_the_run(page, runs):
    store = RunStore.open(runs["advisor"])
    revs = list(store.revisions())
    rows = store.table().to_pylist()
    weakness = page.locator("#weakness textarea")
    expect(weakness).to_have_value(shown_weakness(revs[-1]))  # opens at the last round
    timeline = wait_for_table(page, "timeline", "0")
    assert [r[0] for r in timeline] == [str(r.round) for r in revs]
    assert [r[1] for r in timeline] == [shown_weakness(r) for r in revs]
    assert [r[2] for r in timeline] == [str(r.rows) for r in revs]
    for rev in reversed(revs):
        expect(weakness).to_have_value(shown_weakness(rev))
        expected = [r for r in rows if r["round"] == rev.round]
        shown = wait_for_table(page, "samples", expected[0]["id"])
        assert [c[0] for c in shown] == [r["id"] for r in expected]
        assert [c[4] for c in shown] == [r["prompt"] for r in expected]
        if rev.round > 0:
            expect(page.locator("#summary-diff .added")).to_contain_text(rev.weakness or "")
            expect(page.locator("#round-detail")).to_contain_text(
                f"{rev.rows} / {sum(r.rows for r in revs[: rev.round + 1])}"
            )
        if rev.round:
            page.click("#prev")
    page.click("#next")
    expect(weakness).to_have_value(shown_weakness(revs[1]))
    page.locator("#timeline [data-testid=cell-2-1]").click()  # a row of the timeline opens that round
    expect(weakness).to_have_value(shown_weakness(revs[2]))
    page.screenshot(path=str(ARTIFACTS / "explore.png"), full_page=True)


def test_plots_render_what_the_run_holds(page, runs):
    view = data.open_local(runs["advisor"])
    wait_loaded(page, runs["advisor"])
    coverage = page.locator("#coverage-plot .js-plotly-plot")
    expect(coverage).to_be_visible()
    assert page.locator("#coverage-plot .scatterlayer .trace").count() >= 1
    assert page.locator("#coverage-plot .barlayer .point").count() == view.last_round + 1  # rows per round
    bars = page.locator("#category-plot .barlayer .point")
    expect(bars).to_have_count(len(data.rows_per_category(view, view.last_round)))
    box = page.locator("#category-plot .main-svg").first.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 200
    page.click("#prev")
    expect(page.locator("#category-plot .gtitle")).to_contain_text(f"rounds 0–{view.last_round - 1}")


def test_model_markup_is_shown_as_text_and_search_filters(page, runs):
    wait_loaded(page, runs["advisor"])
    page.locator("#search textarea").fill("bypass a filter")
    page.locator("#cumulative input").check()
    shown = wait_for_table(
        page,
        "samples",
        next(r["id"] for r in data.open_local(runs["advisor"]).rows.to_dict("records") if r["prompt"] == SCRIPT_PROMPT),
    )
    assert [c[4] for c in shown] == [SCRIPT_PROMPT]  # the literal text, tags and all
    assert page.evaluate("window.pwned") is None  # neither the <script> nor the onerror ran
    assert page.locator("#samples script, #samples img").count() == 0
    page.screenshot(path=str(ARTIFACTS / "escaped.png"))


def test_compare_advisor_with_baseline(page, runs):
    page.get_by_role("tab", name="Compare runs").click()
    table = wait_for_table(page, "compare-table", str(runs["advisor"]))
    assert [r[1] for r in table] == ["advisor", "baseline"]
    expected_rows = [str(len(data.open_local(runs[m]).rows)) for m in ("advisor", "baseline")]
    assert [r[3] for r in table] == expected_rows
    from hfadvisor.metrics.run import shared_categories

    categories, _ = shared_categories([RunStore.open(runs[m]) for m in ("advisor", "baseline")], None)
    assert all(r[5].endswith(f" of {len(categories)}") for r in table)  # measured against one shared list
    expect(page.locator("#compare-coverage .scatterlayer .trace")).to_have_count(4)  # 2 runs × 2 panels
    expect(page.locator("#compare-categories .barlayer .trace")).to_have_count(2)
    page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)


def test_errors_are_one_readable_line(page, runs):
    wait_loaded(page, runs["advisor"])
    page.locator("#source textarea").fill("no such/run here")
    page.click("#open")
    expect(page.get_by_text("is neither a run directory nor a Hub dataset repo id")).to_be_visible()
    page.get_by_role("tab", name="Compare runs").click()
    page.locator("#source-b textarea").fill("")
    page.click("#compare")
    expect(page.get_by_text("give a second run to compare with")).to_be_visible()
    assert "Traceback" not in page.inner_text("body")


class GatedModel(ScriptedModel):
    """Holds round 2's weakness call until the test has seen round 1 on the page."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.waiting = threading.Event()  # set while round 2's weakness call is held

    def __call__(self, req: GenerationRequest) -> str:
        if "One more" in req.prompt and self.weak == 1:
            self.waiting.set()
            self.gate.wait(60)
        return super().__call__(req)


def test_start_a_run_rounds_appear_live_download_and_token_stays_secret(page, space, tmp_path):
    model = GatedModel()
    with running_tgi(ScriptedBackend(model)) as tgi:
        page.get_by_text("Hugging Face token (optional)").click()
        page.locator("#token input").fill(SESSION_TOKEN)
        page.get_by_role("tab", name="Start a run").click()
        page.locator("#endpoint textarea").fill(tgi.url)
        for elem, value in (("rounds", "2"), ("batch", "3")):
            box = page.locator(f"#{elem} input[type=number]")
            box.fill(value)
            box.press("Enter")
        page.click("#start")
        live = wait_for_table(page, "live-timeline", "1")  # round 1 is on the page...
        assert len(live) == 1
        expect(page.locator("#live-status [data-phase=running]")).to_contain_text("1 of 2 rounds complete")
        expect(page.locator("#download")).to_be_hidden()  # ...while round 2 is still being made
        model.gate.set()
        expect(page.locator("#live-status [data-phase=finished]")).to_be_visible(timeout=60_000)
        final = wait_for_table(page, "live-timeline", "0")
        assert [r[0] for r in final] == ["0", "1", "2"]
        with page.expect_download() as download:
            page.click("#download")
        archive = tmp_path / "run.zip"
        download.value.save_as(archive)
        sent = [r.headers.get("authorization") for r in tgi.requests if r.method == "POST"]
    assert sent and set(sent) == {f"Bearer {SESSION_TOKEN}"}  # the session's token reached its endpoint

    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path / "x")
    (run_dir,) = (tmp_path / "x").iterdir()
    store = RunStore.open(run_dir, repair=False)
    assert store.rounds_done == 3
    assert [str(i.weakness or "(seeds)") for i in store.index] == [r[1] for r in final]

    page.click("#explore-own")
    expect(page.locator("#weakness textarea")).to_have_value(store.last.weakness or "")
    page.screenshot(path=str(ARTIFACTS / "started-run.png"), full_page=True)

    assert SESSION_TOKEN not in page.content()
    assert SESSION_TOKEN not in page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage)")
    log = Path(space["log"]).read_text(errors="replace")
    assert SESSION_TOKEN not in log and "Traceback" not in log
    for f in Path(space["started"]).rglob("*"):
        if f.is_file():
            assert SESSION_TOKEN.encode() not in f.read_bytes(), f


def test_stop_after_this_round_keeps_the_complete_rounds(space):
    from gradio_client import Client

    model = GatedModel()
    with running_tgi(ScriptedBackend(model)) as tgi:
        client = Client(str(space["url"]), verbose=False)
        job = client.submit("advisor", tgi.url, "tgi", 3, 2, "", api_name="/start_run")
        assert model.waiting.wait(60), "round 2 never started"
        said = client.predict(api_name="/stop_run")
        assert said.startswith("Stopping after the current round")
        model.gate.set()
        status, table, *_ = job.result(timeout=120)
    assert 'data-phase="stopped"' in status and "stopped before round 3" in status
    assert [row[0] for row in table["data"]] == [0, 1, 2]  # round 2 (running when asked) completed, 3 never began


def test_api_with_gradio_client(space, runs):
    from gradio_client import Client

    client = Client(str(space["url"]), verbose=False)
    store = RunStore.open(runs["advisor"])
    rev = store.revision(2)
    got = client.predict(str(runs["advisor"]), 2, api_name="/round")
    assert got["weakness"] == rev.weakness
    assert got["summary_after"] == rev.summary_after
    assert [r["id"] for r in got["rows"]] == [r["id"] for r in store.table().to_pylist() if r["round"] == 2]
    timeline = client.predict(str(runs["baseline"]), api_name="/timeline")
    assert [t["rows"] for t in timeline] == [r.rows for r in RunStore.open(runs["baseline"]).revisions()]
    header, *_ = client.predict(str(runs["advisor"]), "", "", "", "all", False, api_name="/open_run")
    assert store.info.run_id[:8] in header
    with pytest.raises(Exception, match="neither a run directory") as e:
        client.predict("nope nope", 0, api_name="/round")
    assert "Traceback" not in str(e.value)


def test_public_space_never_lends_the_owner_token(runs, tmp_path):
    """spaces/app.py: server paths closed to visitors, the owner's HF_TOKEN never sent anywhere."""
    from gradio_client import Client

    owner = "hf_ownerSECRET_should_never_leave"
    app = Path(__file__).resolve().parent.parent / "spaces" / "app.py"
    log = tmp_path / "public.log"
    with (
        running_tgi(ScriptedBackend(ScriptedModel())) as tgi,
        space_process([], log, env={"HF_TOKEN": owner}, script=app) as url,
    ):
        client = Client(url, verbose=False)
        with pytest.raises(Exception, match="opens Hub dataset repos"):
            client.predict(str(runs["advisor"]), 1, api_name="/round")
        bundled = RunStore.open(app.parent / "example-runs" / "advisor", repair=False)
        shown = client.predict("example: advisor", 1, api_name="/round")  # shipped runs open by name
        assert shown["weakness"] == bundled.revision(1).weakness
        status, table, *_ = client.predict("advisor", tgi.url, "tgi", 1, 2, "", api_name="/start_run")
        assert 'data-phase="finished"' in status
        assert [row[0] for row in table["data"]] == [0, 1]
        no_token = [r.headers.get("authorization") for r in tgi.requests if r.method == "POST"]
        tgi.requests.clear()
        client.predict("advisor", tgi.url, "tgi", 1, 2, SESSION_TOKEN, api_name="/start_run")
        typed = [r.headers.get("authorization") for r in tgi.requests if r.method == "POST"]
    assert no_token and not any(no_token)  # not the owner's token, not any token
    assert typed and set(typed) == {f"Bearer {SESSION_TOKEN}"}
    text = log.read_text(errors="replace")
    assert owner not in text and SESSION_TOKEN not in text
    assert not re.search(r"Traceback", text)


def wait_gone(path: Path, limit: float) -> None:
    """Wait (at most `limit` seconds: a waiting limit, not a timing assertion) for `path` to go."""
    deadline = time.monotonic() + limit
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def test_a_sessions_own_runs_are_removed_when_it_expires(tmp_path):
    """A public Space must not fill its disk: runs started in a session go when the session does.

    Gradio deletes a closed session's state after an hour (a second with GRADIO_IS_E2E_TEST, which
    also makes its heartbeat fast); the app's delete callback then removes the session's
    scratch space. TMPDIR points the app's temp dirs at this test's directory.
    """
    from gradio_client import Client

    app = Path(__file__).resolve().parent.parent / "spaces" / "app.py"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {"TMPDIR": str(scratch), "GRADIO_IS_E2E_TEST": "1"}
    with (
        running_tgi(ScriptedBackend(ScriptedModel())) as tgi,
        space_process([], tmp_path / "server.log", env=env, script=app) as url,
    ):
        client = Client(url, verbose=False)
        status, table, *_ = client.predict("advisor", tgi.url, "tgi", 1, 2, "", api_name="/start_run")
        assert 'data-phase="finished"' in status and [row[0] for row in table["data"]] == [0, 1]
        (run_dir,) = scratch.glob("hfadvisor-session-*/runs/advisor-*")
        assert RunStore.open(run_dir, repair=False).rounds_done == 2
        client.close()  # the tab closes
        wait_gone(run_dir.parent.parent, 60)  # the session's whole scratch space (removed deepest first)
        assert not run_dir.exists() and not list(scratch.glob("hfadvisor-session-*"))


def test_closing_a_session_stops_its_run_and_then_removes_it(tmp_path):
    from hfadvisor.space.live import LiveRun
    from hfadvisor.space.state import Session

    model = GatedModel()
    with running_tgi(ScriptedBackend(model)) as tgi:
        session = Session(workdir=tmp_path / "session")
        out = session.runs / "advisor-x"
        live = LiveRun(out, {"rounds": 3, "batch_size": 2, "endpoints": [tgi.url]})
        live.start(None)
        session.live = live
        assert model.waiting.wait(60), "round 2 never started"
        session.close()  # while round 2 is being made
        assert out.is_dir()  # not pulled from under the running round
        model.gate.set()
        assert live.thread is not None
        live.thread.join(60)
        wait_gone(session.workdir, 30)
    assert not live.running and not session.workdir.exists()
    events = [ev.kind for ev in live.follow(poll=0.01)]
    assert events[-1] == "failed" and "round_started" in events  # stopped before round 3, as asked
