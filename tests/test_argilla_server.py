"""End to end: the unmodified argilla 2.8 SDK against the real argilla-server 2.8.0 over HTTP."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import argilla as rg

if TYPE_CHECKING:
    from tests.servers.argilla_fixtures import ArgillaServer

N_RECORDS = 20


def _settings() -> rg.Settings:
    """The safety-labelling schema the project pushes."""
    return rg.Settings(
        fields=[rg.TextField(name="prompt")],
        questions=[
            rg.LabelQuestion(name="harmful", labels=["yes", "no", "unsure"]),
            rg.MultiLabelQuestion(name="category", labels=["violence", "self-harm", "fraud", "other"], required=False),
            rg.RatingQuestion(name="quality", values=[1, 2, 3, 4, 5], required=False),
            rg.TextQuestion(name="note", required=False),
        ],
        metadata=[
            rg.TermsMetadataProperty(name="round"),
            rg.TermsMetadataProperty(name="source"),
            rg.IntegerMetadataProperty(name="length"),
        ],
    )


def _records(version: int) -> list[rg.Record]:
    """``N_RECORDS`` records with stable ids; ``version`` changes the text, not the ids."""
    return [
        rg.Record(
            id=f"sample-{i:03d}",
            fields={"prompt": f"v{version} prompt number {i} about {'fraud' if i % 2 else 'violence'}"},
            metadata={"round": "round-1" if i < 12 else "round-2", "source": "seed", "length": 10 + i},
            suggestions=[
                rg.Suggestion(question_name="harmful", value="yes" if i % 3 == 0 else "no", score=0.9, agent="m"),
                rg.Suggestion(question_name="category", value=["fraud"] if i % 2 else ["violence"], agent="m"),
            ],
        )
        for i in range(N_RECORDS)
    ]


def test_sdk_flow_against_real_server(argilla_server: ArgillaServer, argilla_client: rg.Argilla) -> None:
    """Dataset creation, idempotent logging, annotator responses, read-back, filters and progress."""
    workspace = argilla_client.workspaces(argilla_server.workspace)
    assert workspace is not None, "bootstrap must create the workspace"
    assert {u.username for u in workspace.users} >= {"annotator1", "annotator2"}

    name = f"safety-{uuid.uuid4().hex[:8]}"
    dataset = rg.Dataset(name=name, workspace=workspace, settings=_settings(), client=argilla_client).create()

    dataset.records.log(_records(version=1))
    dataset.records.log(_records(version=2))  # same ids: an upsert, not duplicates
    records = list(dataset.records(with_suggestions=True))
    assert len(records) == N_RECORDS
    by_id = {r.id: r for r in records}
    assert by_id["sample-003"].fields["prompt"].startswith("v2 ")
    assert by_id["sample-003"].suggestions["harmful"].value == "yes"

    annotator = argilla_server.annotator_keys["annotator1"]
    for i in range(5):
        record = by_id[f"sample-{i:03d}"]
        argilla_server.submit_response(
            record._server_id,
            {"harmful": "yes" if i % 2 else "no", "category": ["fraud"], "quality": 4, "note": f"n{i}"},
            annotator,
        )
    other = argilla_server.annotator_keys["annotator2"]
    argilla_server.submit_response(by_id["sample-000"]._server_id, {"harmful": "unsure"}, other, status="draft")

    answered = {}
    for record in dataset.records(with_responses=True):
        responses = [r for r in record.responses if r.question_name == "harmful"]
        if responses:
            answered[record.id] = responses
    assert sorted(answered) == [f"sample-{i:03d}" for i in range(5)]
    submitted = [r for r in answered["sample-001"] if r.status == "submitted"]
    assert [r.value for r in submitted] == ["yes"]
    assert {r.status for r in answered["sample-000"]} == {"submitted", "draft"}

    round2 = list(dataset.records(query=rg.Query(filter=rg.Filter(("metadata.round", "==", "round-2")))))
    assert sorted(r.id for r in round2) == [f"sample-{i:03d}" for i in range(12, N_RECORDS)]
    long_ones = list(dataset.records(query=rg.Query(filter=rg.Filter(("metadata.length", ">=", 27)))))
    assert sorted(r.id for r in long_ones) == ["sample-017", "sample-018", "sample-019"]
    combined = rg.Filter([("metadata.round", "==", "round-1"), ("response.status", "==", "submitted")])
    assert len(list(dataset.records(query=rg.Query(filter=combined)))) == 5
    suggested = rg.Filter(("harmful.suggestion", "==", "yes"))
    assert len(list(dataset.records(query=rg.Query(filter=suggested)))) == 7
    text_hits = list(dataset.records(query=rg.Query(query="fraud")))
    assert len(text_hits) == N_RECORDS // 2

    progress = dataset.progress(with_users_distribution=True)
    assert progress["total"] == N_RECORDS
    assert progress["completed"] == 5
    assert progress["pending"] == N_RECORDS - 5
    assert progress["users"]["annotator1"]["completed"]["submitted"] == 5


def test_rest_helpers_and_metrics(argilla_server: ArgillaServer, argilla_client: rg.Argilla) -> None:
    """Annotator identity, metadata metrics and the annotator's own progress through plain REST."""
    me = argilla_server.request("GET", "/api/v1/me", api_key=argilla_server.annotator_keys["annotator2"])
    assert me["username"] == "annotator2" and me["role"] == "annotator"

    name = f"metrics-{uuid.uuid4().hex[:8]}"
    dataset = rg.Dataset(
        name=name, workspace=argilla_server.workspace, settings=_settings(), client=argilla_client
    ).create()
    dataset.records.log(_records(version=1))

    props = {
        p["name"]: p["id"]
        for p in argilla_server.request("GET", f"/api/v1/me/datasets/{dataset.id}/metadata-properties")["items"]
    }
    terms = argilla_server.request("GET", f"/api/v1/metadata-properties/{props['round']}/metrics")
    assert terms["total"] == N_RECORDS
    assert {v["term"]: v["count"] for v in terms["values"]} == {"round-1": 12, "round-2": 8}
    numbers = argilla_server.request("GET", f"/api/v1/metadata-properties/{props['length']}/metrics")
    assert (numbers["min"], numbers["max"]) == (10, 10 + N_RECORDS - 1)

    key = argilla_server.annotator_keys["annotator2"]
    first = next(iter(dataset.records))
    argilla_server.submit_response(first._server_id, {"harmful": "no"}, key, status="discarded")
    mine = argilla_server.request("GET", f"/api/v1/me/datasets/{dataset.id}/metrics", api_key=key)
    assert mine["responses"]["discarded"] == 1
    pending = argilla_server.request(
        "POST",
        f"/api/v1/me/datasets/{dataset.id}/records/search",
        api_key=key,
        json={
            "filters": {
                "and": [{"type": "terms", "scope": {"entity": "response", "property": "status"}, "values": ["pending"]}]
            }
        },
    )
    assert pending["total"] == N_RECORDS - 1


def test_search_sort_text_and_similarity(argilla_server: ArgillaServer, argilla_client: rg.Argilla) -> None:
    """The SQLite-backed search engine: sort, field text query, range filters and vector similarity."""
    settings = _settings()
    settings.vectors = [rg.VectorField(name="emb", dimensions=3)]
    name = f"search-{uuid.uuid4().hex[:8]}"
    dataset = rg.Dataset(name=name, workspace=argilla_server.workspace, settings=settings, client=argilla_client)
    dataset.create()
    records = _records(version=1)
    for i, record in enumerate(records):
        record.vectors["emb"] = [1.0, i / 10, 0.0]
    dataset.records.log(records)
    server_ids = {r.id: str(r._server_id) for r in dataset.records}
    ids_by_server = {v: k for k, v in server_ids.items()}

    def search(body: dict, **params: object) -> tuple[list[str], int]:
        result = argilla_server.request(
            "POST", f"/api/v1/datasets/{dataset.id}/records/search", json=body, params=params
        )
        return [ids_by_server[item["record"]["id"]] for item in result["items"]], result["total"]

    by_length = {"sort": [{"scope": {"entity": "metadata", "metadata_property": "length"}, "order": "desc"}]}
    assert search(by_length, limit=3) == (["sample-019", "sample-018", "sample-017"], N_RECORDS)
    assert search(by_length, limit=2, offset=18) == (["sample-001", "sample-000"], N_RECORDS)

    text = {"query": {"text": {"q": "number 7", "field": "prompt"}}}
    assert search(text) == (["sample-007"], 1)

    score = {"type": "range", "scope": {"entity": "suggestion", "question": "harmful", "property": "score"}, "ge": 0.5}
    assert search({"filters": {"and": [score]}})[1] == N_RECORDS

    key = argilla_server.annotator_keys["annotator1"]
    for i, quality in ((2, 5), (4, 3), (6, 4)):
        argilla_server.submit_response(server_ids[f"sample-{i:03d}"], {"harmful": "no", "quality": quality}, key)
    good = {"type": "range", "scope": {"entity": "response", "question": "quality"}, "ge": 4}
    assert sorted(search({"filters": {"and": [good]}})[0]) == ["sample-002", "sample-006"]

    first = next(r for r in dataset.records(with_vectors=True) if r.id == "sample-000")
    similar = rg.Query(similar=rg.Similar(name="emb", value=first))
    nearest = list(dataset.records(query=similar, limit=3))
    assert [r.id for r, _score in nearest] == ["sample-001", "sample-002", "sample-003"]
    farthest = rg.Query(similar=rg.Similar(name="emb", value=[1.0, 0.0, 0.0], most_similar=False))
    assert next(iter(dataset.records(query=farthest, limit=1)))[0].id == "sample-019"
