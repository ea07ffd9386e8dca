"""Label statistics, weakness feedback, category labels and the labels store (no server needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hfadvisor.errors import LabellingError
from hfadvisor.labelling import stats
from hfadvisor.labelling.client import Connection, one_line, public_url, resolve
from hfadvisor.labelling.schema import category_labels
from hfadvisor.rundir.labels import LABEL_SCHEMA, latest, pulls, write


def label(rid: str, rnd: int, who: str, harmful: str | None, **kw: Any) -> dict[str, Any]:
    return {
        "id": rid,
        "round": rnd,
        "weakness": kw.pop("weakness", f"W{rnd}"),
        "source": "advisor",
        "annotator": who,
        "harmful": harmful,
        "categories": kw.pop("categories", []),
        "on_target": kw.pop("on_target", None),
        "quality": kw.pop("quality", None),
        "note": kw.pop("note", None),
    }


def test_majority_and_agreement() -> None:
    assert stats.majority(["yes", "yes", "no"]) == "yes"
    assert stats.majority(["yes", "no"]) is None  # a tie is no answer
    assert stats.majority([None, ""]) is None
    assert stats.pairwise_agreement(["yes", "yes", "no"]) == (1, 3)
    assert stats.pairwise_agreement(["yes", None]) == (0, 0)


def test_per_round_rates_agreement_and_categories() -> None:
    rows = [
        label("a", 1, "u1", "yes", on_target="yes", categories=["Fraud"]),
        label("a", 1, "u2", "yes", on_target="no", categories=["Fraud", "Theft"]),
        label("b", 1, "u1", "no", on_target="no"),
        label("b", 1, "u2", "yes", on_target="no"),
        label("c", 1, "u1", "unsure"),
        label("d", 2, "u1", "yes", categories=["other"], note="Deepfake scams\nsecond line"),
    ]
    r1, r2 = stats.per_round(rows)
    assert (r1.round, r1.labelled, r1.responses) == (1, 3, 5)
    assert r1.harmful_rate == pytest.approx(1 / 3)  # a: yes; b: tie; c: unsure
    assert r1.on_target_rate == 0.0  # a: tie (no answer); b: no → 0 of 1
    assert (r1.agree, r1.pairs) == (1, 2)
    assert r1.categories == {"Fraud": 1, "Theft": 1}
    assert (r2.labelled, r2.harmful_rate, r2.on_target_rate, r2.agreement) == (1, 1.0, None, None)
    cats = stats.per_category(rows)
    assert list(cats) == ["Fraud", "Theft", "other"]
    assert (cats["Fraud"].records, cats["Fraud"].harmful) == (1, 1)
    assert stats.added_under_other(rows) == {"Deepfake scams": 1}


def test_feedback_steers_away_and_towards() -> None:
    rows = [
        label("a", 1, "u1", "no", on_target="yes", weakness="Cooking tips"),
        label("b", 1, "u1", "no", on_target="yes", weakness="Cooking tips"),
        label("c", 2, "u1", "yes", on_target="no", weakness="Vague harm"),
        label(
            "d", 3, "u1", "yes", on_target="yes", weakness="Good one", categories=["other"], note="Voter suppression."
        ),
        label("e", 3, "u2", "yes", categories=["other"], note="voter  SUPPRESSION"),
        label("f", 3, "u2", "yes", categories=["other"], note="Already covered"),
        label("s", 0, "u1", "no", on_target="no", weakness="Seed category"),  # seeds are not judged
    ]
    text = stats.feedback(rows, summary=["Already covered", "Something"])
    assert text == (
        "Human reviewers judged the requests written for these categories not harmful: Cooking tips.\n"
        "Human reviewers found the requests written for these categories off target: Vague harm.\n"
        "Human reviewers flagged these categories as missing: Voter suppression."
    )
    assert stats.feedback([label("a", 1, "u1", "yes", on_target="yes")], summary=[]) is None
    assert stats.feedback([], summary=[]) is None


def test_card_sections_escape_annotator_and_model_text() -> None:
    evil = "<script>x</script> | [link](http://e) # *"
    rows = [label("a", 1, "u1", "yes", weakness=evil, categories=["other"], note=evil)]
    sections = stats.card_sections(rows, pull=3, dataset="ds|x", workspace="w", pulled_at="2025-01-01T00:00:00+00:00")
    text = "\n".join(s.markdown for s in sections)
    assert "<script>" not in text and "[link](" not in text
    assert "&lt;script&gt;" in text and "\\[link\\](" in text and "\\|" in text
    assert "pull 3" in text and "`ds\\|x`" in text
    assert [s.title for s in sections] == ["Human labels (Argilla)", "Human labels: categories"]


def test_category_labels_dedupe_and_cap() -> None:
    labels = category_labels(["Fraud", "fraud!", "Theft"], [None, "Theft", "x" * 300, "Other"])
    assert labels == ["Fraud", "Theft", "x" * 200, "other"]
    assert category_labels([], [None]) == ["unspecified", "other"]
    many = category_labels([f"c{i}" for i in range(800)], [])
    assert len(many) == 500 and many[-1] == "other"


def test_labels_versions_are_written_atomically_and_verified(tmp_path: Path) -> None:
    class Store:  # the part of RunStore that `write` uses
        path = tmp_path

    info = dict(
        dataset="d", workspace="w", server="http://h", rows_in_run=3, rounds_in_run=2, foreign_records=0, categories=[]
    )
    rows = [label("a", 1, "u1", "yes", categories=["Fraud"], quality=4)]
    m1, new = write(Store(), rows, **info)  # type: ignore[arg-type]
    assert new and m1.pull == 1 and (tmp_path / "labels" / "pull-00001.parquet").is_file()
    assert write(Store(), rows, **info) == (m1, False)  # unchanged → nothing written  # type: ignore[arg-type]
    m2, new = write(Store(), [*rows, label("b", 1, "u2", "no")], **info)  # type: ignore[arg-type]
    assert new and m2.pull == 2 and pulls(tmp_path) == [1, 2]
    got = latest(tmp_path)
    assert got is not None and got.manifest.pull == 2 and len(got.rows) == 2
    assert got.rows[0]["categories"] == ["Fraud"] and got.rows[0]["quality"] == 4
    # A torn newest shard is not trusted: the previous version is used.
    (tmp_path / "labels" / "pull-00002.parquet").write_bytes(b"torn")
    fallback = latest(tmp_path)
    assert fallback is not None and fallback.manifest.pull == 1
    assert LABEL_SCHEMA.field("categories").type.value_type.equals(LABEL_SCHEMA.field("note").type)


def test_connection_settings_and_redaction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARGILLA_API_URL", "https://env-host:6900/")
    monkeypatch.setenv("ARGILLA_API_KEY", "env-key")
    assert resolve() == Connection("https://env-host:6900", "env-key")
    assert resolve("http://flag:1", "flag-key") == Connection("http://flag:1", "flag-key")
    assert "flag-key" not in repr(resolve("http://flag:1", "flag-key"))
    assert public_url("https://user:pw@host:8080/argilla/") == "https://host:8080/argilla"
    assert one_line("bad\n key sk-123 here", "sk-123") == "bad key *** here"
    with pytest.raises(LabellingError, match="must start with http"):
        resolve("ftp://x", "k")
