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
from collections.abc import Callable

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


def pull_name(n: int) -> str:
    return f"pull-{n:05d}"


def session_name(n: int) -> str:
    return f"session-{n:05d}"


def _numbered(folder: str, suffix: str, stem: Callable[[int], str] = round_name) -> Callable[[int], str]:
    """The path of the n-th file of one kind, `FOLDER/STEM(n)SUFFIX` (so the layout reads as a table)."""

    def path(n: int) -> str:
        return f"{folder}/{stem(n)}{suffix}"

    return path


data_shard = _numbered(DATA, ".parquet")
rejects_shard = _numbered(REJECTS, ".parquet")
card = _numbered(CARDS, ".md")
revision = _numbered(REVISIONS, ".json")
session = _numbered(SESSIONS, ".json", session_name)
RESPONSES_CONFIG = f"{RESPONSES}/config.json"
response_shard = _numbered(RESPONSES, ".parquet")
response_record = _numbered(RESPONSES, ".json")
labels_shard = _numbered(LABELS, ".parquet", pull_name)
labels_manifest = _numbered(LABELS, ".json", pull_name)
