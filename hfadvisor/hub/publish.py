"""Push a run to the Hub: one commit and one tag per round, idempotent and resumable.

Round r's commit carries only what round r added: its data and rejects shards, its card
(`cards/…` as the run wrote it, and `README.md` rendered for the Hub with the tag and repo
id), its revision record (the run's state as of round r: summary, pool additions, ledger)
and, with round 0, `run.json`. Bytes per round therefore follow the round's rows, not the
dataset's size.

Trailers in each commit message name the run, the round and the sha256 of the round's
revision record. With the tags they are all the state a push needs, read back from the Hub
before pushing and after any failure: a round committed but not tagged (a lost response, a
kill) gets its tag, nothing is committed twice, and commits go on `main` with
`parent_commit` set, so a concurrent writer makes the commit fail instead of forking history.
A tag already on another commit is an error, never moved.

Answers from `hfadvisor respond` follow the rounds they answer in one untagged commit per push
(`responses/…`, plus a `responses` config in the card), so tags keep meaning "rounds 0..r".
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from huggingface_hub import CommitOperationAdd, HfApi, get_token
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from hfadvisor import card
from hfadvisor.errors import ConfigError, HFAdvisorError, HubError
from hfadvisor.hub.errors import describe, is_transient
from hfadvisor.ledger import Ledger
from hfadvisor.records import Revision
from hfadvisor.rundir import paths, responses
from hfadvisor.rundir.files import sha256
from hfadvisor.rundir.store import RunStore

TAG_DIGITS = 4
_T = TypeVar("_T")
_TRAILER = re.compile(r"^Hfadvisor-(Run|Round|Revision-Sha256):[ \t]*(\S+)[ \t]*$", re.M)
_TAG_PREFIX = re.compile(r"^(?!refs/)(?!/)(?!.*\.\.)[A-Za-z0-9._/-]*$")


def tag_name(prefix: str, r: int) -> str:
    """`round-0007`: the tag of round r (zero-padded so tags sort by round)."""
    return f"{prefix}{r:0{TAG_DIGITS}d}"


def trailers(run_id: str, r: int, revision_sha256: str) -> str:
    return f"Hfadvisor-Run: {run_id}\nHfadvisor-Round: {r}\nHfadvisor-Revision-Sha256: {revision_sha256}\n"


def parse_trailers(message: str) -> tuple[str, int, str] | None:
    """(run id, round, revision sha256) from a commit message, or None for commits not made by a push."""
    found = {key: value for key, value in _TRAILER.findall(message)}
    if len(found) != 3 or not found["Round"].isdigit():
        return None
    return found["Run"], int(found["Round"]), found["Revision-Sha256"]


@dataclass
class RemoteRound:
    commit: str
    revision_sha256: str


@dataclass
class RemoteState:
    """What the Hub repo holds, as far as pushing is concerned."""

    head: str  # main's commit
    private: bool | None
    run_id: str | None  # the run whose rounds are on main (None: no round pushed yet)
    rounds: dict[int, RemoteRound]
    tags: dict[str, str]  # tag → commit
    other_files: list[str]  # files on main when no round is (anything but .gitattributes)
    files: set[str] = field(default_factory=set)  # every file on main

    @property
    def has_responses(self) -> bool:
        return any(f.startswith(f"{paths.RESPONSES}/") and f.endswith(".parquet") for f in self.files)


@dataclass
class PushedRound:
    """What pushing one round did."""

    round: int
    tag: str
    commit: str
    bytes: int  # file bytes sent in the round's commit (0 if the commit was already there)
    seconds: float
    committed: bool  # False: an earlier, interrupted push had made the commit
    tagged: bool  # False: the tag was already there

    def line(self, repo_id: str) -> str:
        what = f"{self.bytes / 1024:.1f} KiB" if self.committed else "tag only: the commit was already there"
        return f"round {self.round} → {repo_id}@{self.tag} ({what}, {self.seconds:.2f}s)"


@dataclass
class PushedResponses:
    """What pushing a run's responses (`hfadvisor respond`) did: one commit, no tag."""

    rounds: list[int]  # data rounds whose answers this commit added
    commit: str
    bytes: int
    seconds: float

    def line(self, repo_id: str) -> str:
        span = f"{self.rounds[0]}-{self.rounds[-1]}" if len(self.rounds) > 1 else str(self.rounds[0])
        return (
            f"responses to rounds {span} → {repo_id} ({self.bytes / 1024:.1f} KiB, {self.seconds:.2f}s); "
            f'load them with datasets.load_dataset("{repo_id}", "responses")'
        )


class HubPublisher:
    """Pushes the rounds of one run to one Hub dataset repo.

    Token from `HF_TOKEN` or the stored login, endpoint from `HF_ENDPOINT` (huggingface_hub's
    own resolution). `connect()` checks everything that can be checked before a round is
    pushed; `push_pending(store)` pushes every round the Hub lacks, retrying transient
    failures after re-reading the Hub's state.
    """

    def __init__(
        self,
        repo_id: str,
        *,
        private: bool = True,
        tag_prefix: str = "round-",
        card_template: str | Path | None = None,
        max_attempts: int = 5,
        backoff: float = 1.0,
        token: str | None = None,
    ) -> None:
        if repo_id.count("/") != 1:
            raise ConfigError(f"Hub repo {repo_id!r} must be namespace/name (your user or org, then the dataset name)")
        try:
            validate_repo_id(repo_id)
        except HFValidationError:
            raise ConfigError(
                f"Hub repo {repo_id!r} is not a valid repo id: letters, digits, '-', '_', '.' in namespace/name"
            ) from None
        if not _TAG_PREFIX.match(tag_prefix):
            raise ConfigError(
                f"tag prefix {tag_prefix!r} is not usable in a git tag: use letters, digits, '.', '_', '-'"
            )
        if max_attempts < 1:
            raise ConfigError("max attempts must be at least 1")
        self.repo_id = repo_id
        self.private = private
        self.tag_prefix = tag_prefix
        self.card_template = Path(card_template) if card_template else None
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.token = token or get_token()  # an explicit token (a Space session's), else HF_TOKEN / stored login
        self.api = HfApi(token=self.token)
        self.endpoint = self.api.endpoint
        self.remote: RemoteState | None = None
        self._confirmed = 0  # rounds 0.._confirmed-1 are committed and tagged on the Hub
        self._ledger: tuple[int, Ledger] = (0, Ledger())  # (n, ledger total of rounds < n) for the cards

    # ------------------------------------------------------------------ errors
    def _error(self, exc: BaseException) -> HubError:
        return HubError(describe(exc, endpoint=self.endpoint, repo_id=self.repo_id, token=self.token))

    # ------------------------------------------------------------------ connect
    def connect(self) -> None:
        """Token, endpoint, write access, repo (created private unless asked otherwise), repo content."""
        if not self.token:
            raise HubError(
                "no Hugging Face token to push with: set HF_TOKEN or run `hf auth login` (the token needs write access)"
            )
        me = self._retry(self.api.whoami)
        namespace = self.repo_id.split("/")[0]
        role = ((me.get("auth") or {}).get("accessToken") or {}).get("role")
        if role == "read":
            raise HubError(
                f"the Hugging Face token is read-only: pushing to {self.repo_id} needs a token with write access"
            )
        orgs = [o.get("name") for o in me.get("orgs") or [] if o.get("name")]
        if namespace not in {me.get("name"), *orgs}:
            mine = ", ".join([str(me.get("name")), *orgs])
            raise HubError(f"no write access to namespace '{namespace}' (this token can write to: {mine})")

        def create_and_read() -> RemoteState:
            self.api.create_repo(self.repo_id, repo_type="dataset", private=self.private, exist_ok=True)
            return self._read_state()

        self.remote = self._retry(create_and_read)
        if self.remote.run_id is None and self.remote.other_files:
            shown = ", ".join(self.remote.other_files[:3]) + (", …" if len(self.remote.other_files) > 3 else "")
            raise HubError(
                f"{self.repo_id} already holds files that are not an hfadvisor run ({shown}): push to a new repo"
            )
        if self.remote.private is False and self.private:
            raise HubError(
                f"{self.repo_id} is public and the run's rows are harmful prompts: make the repo private, "
                "or pass --public to publish there"
            )

    def _read_state(self) -> RemoteState:
        info = self.api.dataset_info(self.repo_id, revision="main")
        refs = self.api.list_repo_refs(self.repo_id, repo_type="dataset")
        rounds: dict[int, RemoteRound] = {}
        runs: set[str] = set()
        for c in self.api.list_repo_commits(self.repo_id, repo_type="dataset", revision="main"):
            found = parse_trailers(f"{c.title}\n{c.message}")
            if found is None:
                continue
            run_id, r, digest = found
            runs.add(run_id)
            rounds.setdefault(r, RemoteRound(c.commit_id, digest))  # newest first
        if len(runs) > 1:
            raise HubError(
                f"{self.repo_id} holds rounds of {len(runs)} different runs: pull one of them, push to a new repo"
            )
        files = [s.rfilename for s in info.siblings or []]
        return RemoteState(
            head=str(info.sha),
            private=info.private,
            run_id=next(iter(runs), None),
            rounds=rounds,
            tags={t.name: t.target_commit for t in refs.tags},
            other_files=[] if rounds else [f for f in files if f != ".gitattributes"],
            files=set(files),
        )

    def attach(self, store: RunStore) -> None:
        """Refuse a repo that holds another run (run ids are unique per run)."""
        self.check_run(store.info.run_id)

    def check_run(self, run_id: str) -> None:
        """Refuse a repo that holds another run; callable before the run directory exists."""
        assert self.remote is not None, "connect() first"
        if self.remote.run_id and self.remote.run_id != run_id:
            raise HubError(
                f"{self.repo_id} holds another hfadvisor run ({self.remote.run_id[:8]}), not this one "
                f"({run_id[:8]}): push to a new repo, or continue that run with `hfadvisor pull {self.repo_id} DIR`"
            )

    def rounds_on_hub(self) -> int:
        """How many rounds of the attached run main holds (rounds 0..n-1)."""
        assert self.remote is not None, "connect() first"
        return max(self.remote.rounds, default=-1) + 1

    # ------------------------------------------------------------------ push
    def push_pending(self, store: RunStore, on_round: Callable[[PushedRound], None] | None = None) -> list[PushedRound]:
        """Push every complete round of `store` the Hub lacks; returns what was done, round by round.

        A transient failure (connection, timeout, 5xx, 429, a ref moved under us) is retried
        with exponential backoff after re-reading the Hub's state, up to `max_attempts`.
        """
        done: list[PushedRound] = []

        def rounds() -> list[PushedRound]:
            for r in range(self._confirmed, store.rounds_done):
                pushed = self._push_round(store, r)
                self._confirmed = r + 1
                if pushed.committed or pushed.tagged:
                    done.append(pushed)
                    if on_round:
                        on_round(pushed)
            return done

        return self._retrying(store, rounds)

    def push_responses(self, store: RunStore) -> PushedResponses | None:
        """Push the answers of `hfadvisor respond` to rounds already on the Hub, in one untagged commit.

        Only what main lacks is sent (records are compared by path: a record is written once),
        and the card gains a `responses` config so `load_dataset(repo, "responses")` works.
        Call after `push_pending`. None when there is nothing to send.
        """
        return self._retrying(store, lambda: self._push_responses(store))

    def _retrying(self, store: RunStore, step: Callable[[], _T]) -> _T:
        """`step()` with the Hub's state read first (and re-read before each retry: a failed
        commit may have landed anyway)."""

        def attempt() -> _T:
            if self.remote is None:
                self.remote = self._read_state()
                self.attach(store)
            return step()

        return self._retry(attempt)

    def _retry(self, fn: Callable[[], _T]) -> _T:
        """`fn()`, transient Hub failures (connection, timeout, 5xx, 429, 412) retried with exponential backoff."""

        def forget_state(_: RetryCallState) -> None:
            self.remote = None

        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_exponential(multiplier=self.backoff),
            retry=retry_if_exception(lambda e: not isinstance(e, HFAdvisorError) and is_transient(e)),
            before_sleep=forget_state,
            sleep=time.sleep,
            reraise=True,
        )
        try:
            return retrying(fn)
        except HFAdvisorError:
            raise
        except Exception as e:
            if not is_transient(e):
                raise self._error(e) from None
            tries = retrying.statistics.get("attempt_number", self.max_attempts)
            raise HubError(
                f"{self._error(e)} after {tries} attempt{'s' if tries > 1 else ''}; pushing again completes it",
                retryable=True,
            ) from None

    def _push_round(self, store: RunStore, r: int) -> PushedRound:
        remote = self.remote
        assert remote is not None
        t0 = time.monotonic()
        rev_bytes = (store.path / paths.revision(r)).read_bytes()
        digest = sha256(rev_bytes)
        tag = tag_name(self.tag_prefix, r)
        have = remote.rounds.get(r)
        tagged_at = remote.tags.get(tag)
        if have is not None and have.revision_sha256 != digest:
            raise HubError(
                f"{self.repo_id} already has a different round {r} of this run (pushed from another copy of it?): "
                f"push this copy to a new repo, or continue the Hub's copy with `hfadvisor pull {self.repo_id} DIR`"
            )
        if have is None and tagged_at is not None:
            raise self._tag_conflict(tag, tagged_at, r, None)
        if have is None and remote.rounds and max(remote.rounds) > r:
            raise HubError(f"{self.repo_id} has later rounds of this run but not round {r}: its history was edited")
        nbytes = 0
        if have is None:
            commit, nbytes = self._commit(store, r, rev_bytes, digest, tag)
        else:
            commit = have.commit
        if tagged_at is None:
            self.api.create_tag(
                self.repo_id,
                tag=tag,
                tag_message=f"hfadvisor round {r}",
                revision=commit,
                repo_type="dataset",
            )
            remote.tags[tag] = commit
        elif tagged_at != commit:
            raise self._tag_conflict(tag, tagged_at, r, commit)
        return PushedRound(r, tag, commit, nbytes, time.monotonic() - t0, have is None, tagged_at is None)

    def _tag_conflict(self, tag: str, at: str, r: int, commit: str | None) -> HubError:
        ours = f"round {r}'s commit {commit[:8]}" if commit else f"round {r} of this run"
        return HubError(
            f"tag {tag} already exists on {self.repo_id} at commit {at[:8]}, not on {ours}: "
            "delete that tag on the Hub or choose another --tag-prefix"
        )

    def _commit(self, store: RunStore, r: int, rev_bytes: bytes, digest: str, tag: str) -> tuple[str, int]:
        remote = self.remote
        assert remote is not None
        rev = Revision.model_validate_json(rev_bytes)
        files: dict[str, bytes] = {}
        if r == 0:  # the run's identity and method config, once
            files[paths.RUN_JSON] = (store.path / paths.RUN_JSON).read_bytes()
        for rel in (rev.shard, rev.rejects_shard, rev.card):
            if rel:
                files[rel] = (store.path / rel).read_bytes()
        files[paths.revision(r)] = rev_bytes
        files[paths.README] = self.card(store, rev, tag).encode()
        rows_total = sum(i.rows for i in store.index[: r + 1])
        weakness = " ".join((rev.weakness or ("seeds" if r == 0 else "")).split())[:80]
        title = f"Round {r}{f': {weakness}' if weakness else ''} (+{rev.rows} rows)"
        description = (
            f"Round {r} of hfadvisor {store.info.mode} run {store.info.run_id[:8]}: {rev.rows} rows added "
            f"({rows_total} in total), {rev.rejects} rejected. Tag: {tag}.\n\n" + trailers(store.info.run_id, r, digest)
        )
        info = self.api.create_commit(
            self.repo_id,
            [CommitOperationAdd(path_in_repo=path, path_or_fileobj=data) for path, data in files.items()],
            commit_message=title,
            commit_description=description,
            repo_type="dataset",
            revision="main",
            parent_commit=remote.head,
        )
        remote.head = info.oid
        remote.files.update(files)
        remote.rounds[r] = RemoteRound(info.oid, digest)
        remote.run_id = store.info.run_id
        return info.oid, sum(len(b) for b in files.values())

    def _push_responses(self, store: RunStore) -> PushedResponses | None:
        remote = self.remote
        assert remote is not None
        t0 = time.monotonic()
        on_hub = self.rounds_on_hub()
        records = {r: rec for r, rec in responses.committed(store).items() if r < on_hub}
        config_path = paths.RESPONSES_CONFIG
        files: dict[str, bytes] = {}
        added: list[int] = []
        for r, rec in sorted(records.items()):
            record_path = paths.response_record(r)
            if record_path in remote.files:
                continue
            files[rec.shard] = (store.path / rec.shard).read_bytes()
            files[record_path] = (store.path / record_path).read_bytes()
            added.append(r)
        if not added:
            return None
        local_config = (store.path / config_path).read_bytes()
        if config_path in remote.files:
            theirs = Path(
                self.api.hf_hub_download(
                    self.repo_id, config_path, repo_type="dataset", revision=remote.head, token=self.token
                )
            ).read_bytes()
            if json.loads(theirs) != json.loads(local_config):
                raise HubError(
                    f"{self.repo_id} holds responses made with other settings (model, sampling or template) than "
                    f"{store.path}'s: push to a new repo, or answer again with the Hub's settings"
                )
        else:
            files[config_path] = local_config
        last = on_hub - 1
        rev = store.revision(last)
        files[paths.README] = self.card(store, rev, tag_name(self.tag_prefix, last), responses=True).encode()
        model = json.loads(local_config).get("model", "?")
        span = f"{added[0]}-{added[-1]}" if len(added) > 1 else str(added[0])
        info = self.api.create_commit(
            self.repo_id,
            [CommitOperationAdd(path_in_repo=path, path_or_fileobj=data) for path, data in files.items()],
            commit_message=f"Responses to rounds {span} ({model})",
            commit_description=f"Answers by {model} to the rows of rounds {span} (`hfadvisor respond`).",
            repo_type="dataset",
            revision="main",
            parent_commit=remote.head,
        )
        remote.head = info.oid
        remote.files.update(files)
        return PushedResponses(added, info.oid, sum(len(b) for b in files.values()), time.monotonic() - t0)

    def card(self, store: RunStore, rev: Revision, tag: str, *, responses: bool | None = None) -> str:
        """Round r's card as the Hub shows it: the run's card plus the tag and repo id."""
        assert self.remote is not None
        return card.render(
            store.info,
            rev,
            store.index[: rev.round + 1],
            rounds_planned=rev.rounds_planned or rev.round,
            ledger_total=self._ledger_total(store, rev),
            tag=tag,
            repo_id=self.repo_id,
            template=self.card_template,
            responses=self.remote.has_responses if responses is None else responses,
        )

    def _ledger_total(self, store: RunStore, rev: Revision) -> Ledger:
        """Whole-run counts up to rev.round, summed incrementally (rounds are pushed in order)."""
        n, total = self._ledger
        if n > rev.round:
            n, total = 0, Ledger()
        while n < rev.round:
            total = total.plus(store.revision(n).ledger)
            n += 1
        self._ledger = (n, total)
        return total.plus(rev.ledger)


def push_run(
    run_dir: str | Path,
    repo_id: str,
    *,
    private: bool = True,
    tag_prefix: str = "round-",
    card_template: str | Path | None = None,
    max_attempts: int = 5,
    on_round: Callable[[PushedRound], None] | None = None,
    on_responses: Callable[[PushedResponses], None] | None = None,
) -> list[PushedRound]:
    """Push every round of the run in `run_dir` that `repo_id` lacks (shards verified first), then its responses."""
    store = RunStore.open(run_dir, repair=False)
    publisher = HubPublisher(
        repo_id, private=private, tag_prefix=tag_prefix, card_template=card_template, max_attempts=max_attempts
    )
    publisher.connect()
    publisher.attach(store)
    pushed = publisher.push_pending(store, on_round)
    responses = publisher.push_responses(store)
    if responses and on_responses:
        on_responses(responses)
    return pushed
