"""Every path and glob of a run directory, in one place (the store, respond, labels, evaluations, cards, Hub).

Layout::

    run.json                        written once: run id, method config + hash, resolved preset
    data/round-00007.parquet        the round's accepted rows (the dataset)
    rejects/round-00007.parquet     the round's rejected generations, with reasons
    cards/round-00007.md            the dataset card as of round 7
    revisions/round-00007.json      the round's record; its presence makes round 7 complete
    README.md                       the current card (a copy of the latest round's)
    sessions/session-00002.json     what each invocation spent and how it ended
    responses/config.json           `hfadvisor respond`: target model, sampling, template (written once)
    responses/round-00007.parquet   answers to the rows of data round 7
    responses/round-00007.json      their record, written last
    labels/pull-00003.parquet       `hfadvisor label pull`: submitted Argilla responses
    labels/pull-00003.json          its manifest, written last
    evaluations/NAME/summary.json   `hfadvisor evaluate --output RUN/evaluations/NAME`

Paths are relative to the run directory (POSIX separators: they are also the Hub's paths).
"""

from __future__ import annotations

import re

RUN_JSON = "run.json"
README = "README.md"
DATA = "data"
REJECTS = "rejects"
CARDS = "cards"
REVISIONS = "revisions"
SESSIONS = "sessions"
RESPONSES = "responses"
LABELS = "labels"
EVALUATIONS = "evaluations"
CORRUPT = ".corrupt"  # rounds that failed verification are moved here by a repairing open

ROUND_RE = re.compile(r"^round-(\d{5,})\.(json|parquet|md)$")
SESSION_RE = re.compile(r"^session-(\d{5,})\.json$")
PULL_RE = re.compile(r"^pull-(\d{5,})\.json$")
TEMP_RE = re.compile(r"^\..+\.tmp\d+$")

# The per-round folders and the suffix of their files (a round's files, for repair and cleanup).
ROUND_DIRS: tuple[tuple[str, str], ...] = (
    (REVISIONS, ".json"),
    (DATA, ".parquet"),
    (REJECTS, ".parquet"),
    (CARDS, ".md"),
)

# The README's `configs` globs (`datasets.load_dataset(DIR_OR_REPO, config)`).
DATA_GLOB = f"{DATA}/*.parquet"
REJECTS_GLOB = f"{REJECTS}/*.parquet"
RESPONSES_GLOB = f"{RESPONSES}/*.parquet"
EVALUATION_SUMMARIES_GLOB = f"{EVALUATIONS}/*/summary.json"

# Everything a run directory holds that the Hub mirrors, except README.md: the Hub's README is
# the card rendered for the Hub; a pulled run's README is restored from cards/.
HUB_RUN_FILES = [RUN_JSON, f"{DATA}/*", f"{REJECTS}/*", f"{CARDS}/*", f"{REVISIONS}/*", f"{RESPONSES}/*"]


def round_name(r: int) -> str:
    """`round-00007`: the stem of every file of round r (zero-padded so names sort by round)."""
    return f"round-{r:05d}"


def data_shard(r: int) -> str:
    return f"{DATA}/{round_name(r)}.parquet"


def rejects_shard(r: int) -> str:
    return f"{REJECTS}/{round_name(r)}.parquet"


def card(r: int) -> str:
    return f"{CARDS}/{round_name(r)}.md"


def revision(r: int) -> str:
    return f"{REVISIONS}/{round_name(r)}.json"


def session(n: int) -> str:
    return f"{SESSIONS}/session-{n:05d}.json"


RESPONSES_CONFIG = f"{RESPONSES}/config.json"


def response_shard(r: int) -> str:
    return f"{RESPONSES}/{round_name(r)}.parquet"


def response_record(r: int) -> str:
    return f"{RESPONSES}/{round_name(r)}.json"


def pull_name(n: int) -> str:
    return f"pull-{n:05d}"


def labels_shard(n: int) -> str:
    return f"{LABELS}/{pull_name(n)}.parquet"


def labels_manifest(n: int) -> str:
    return f"{LABELS}/{pull_name(n)}.json"
