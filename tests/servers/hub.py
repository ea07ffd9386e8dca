"""A Hugging Face Hub-compatible HTTP server for tests.

It speaks enough of the Hub's HTTP API for the unmodified ``huggingface_hub`` and ``datasets``
clients (see ``docs/test-servers.md``): repos, NDJSON commits, Git LFS batch
uploads, branches, tags, refs, commit history, tree listings and ``resolve`` downloads.

State lives in memory. Every request is logged in :attr:`HubServer.requests`; unknown routes
answer 404 and are logged with ``route=None`` so a client calling something new fails loudly.
:meth:`HubServer.fail_next` injects faults and :meth:`HubServer.repo` snapshots a repository.
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import hashlib
import json
import re
import secrets
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, unquote

import uvicorn
import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

__all__ = [
    "DEFAULT_TOKEN",
    "READ_TOKEN",
    "CommitSnapshot",
    "Fault",
    "FileEntry",
    "HubServer",
    "RepoSnapshot",
    "RequestRecord",
]

DEFAULT_TOKEN = "hf_fake_write_token"
READ_TOKEN = "hf_fake_read_token"
DEFAULT_USER = "hf-tester"
DEFAULT_ORGS = ("hf-test-org",)

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LFS_THRESHOLD = 10 * 1024 * 1024
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"

# The Hub seeds every new repo with this .gitattributes (abridged) in an "initial commit".
DEFAULT_LFS_PATTERNS = (
    "*.7z",
    "*.arrow",
    "*.avro",
    "*.bin",
    "*.bz2",
    "*.ckpt",
    "*.ftz",
    "*.gz",
    "*.h5",
    "*.joblib",
    "*.lfs.*",
    "*.lz4",
    "*.mds",
    "*.mlmodel",
    "*.model",
    "*.msgpack",
    "*.npy",
    "*.npz",
    "*.onnx",
    "*.ot",
    "*.parquet",
    "*.pb",
    "*.pickle",
    "*.pkl",
    "*.pt",
    "*.pth",
    "*.rar",
    "*.safetensors",
    "saved_model/**/*",
    "*.tar.*",
    "*.tar",
    "*.tflite",
    "*.tgz",
    "*.wasm",
    "*.xz",
    "*.zip",
    "*.zst",
    "*tfevents*",
    "*.mp3",
    "*.ogg",
    "*.wav",
    "*.flac",
    "*.jpg",
    "*.jpeg",
    "*.png",
    "*.webp",
    "*.gif",
    "*.mp4",
)
DEFAULT_GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in DEFAULT_LFS_PATTERNS)


# --------------------------------------------------------------------------------------------
# Storage model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileEntry:
    """One file in a commit's tree: git blob oid, size and (for LFS files) the sha256."""

    oid: str
    size: int
    lfs_sha256: str | None = None
    pointer_size: int | None = None

    @property
    def is_lfs(self) -> bool:
        """Whether the file is stored through Git LFS."""
        return self.lfs_sha256 is not None


@dataclass
class _Commit:
    """A commit: parent, full tree snapshot (path -> FileEntry), message, author, byte counts."""

    oid: str
    parent: str | None
    files: dict[str, FileEntry]
    title: str
    description: str
    author: str
    date: str
    uploaded_bytes: int = 0
    request_bytes: int = 0


@dataclass
class _Repo:
    """A repository: commits, refs (branches/tags/converts/PRs) and its LFS object store."""

    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    commits: dict[str, _Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # full ref ("refs/heads/main") -> commit oid
    tag_messages: dict[str, str] = field(default_factory=dict)
    lfs: dict[str, bytes] = field(default_factory=dict)  # sha256 -> content
    lfs_pending: set[str] = field(default_factory=set)  # uploaded, not yet referenced by a commit
    gated: bool = False


@dataclass(frozen=True)
class CommitSnapshot:
    """A commit as recorded by the server."""

    oid: str
    parent: str | None
    title: str
    description: str
    author: str
    date: str
    files: dict[str, FileEntry]
    uploaded_bytes: int
    request_bytes: int


@dataclass(frozen=True)
class RepoSnapshot:
    """Read-only copy of a repository's state, taken by :meth:`HubServer.repo`."""

    repo_id: str
    repo_type: str
    private: bool
    commits: list[CommitSnapshot]  # newest first, reachable from any ref or not
    branches: dict[str, str]
    tags: dict[str, str]
    tag_messages: dict[str, str]
    refs: dict[str, str]
    _blobs: dict[str, bytes] = field(repr=False)
    _lfs: dict[str, bytes] = field(repr=False)

    def resolve(self, revision: str = "main") -> str:
        """Commit oid for a branch, tag, full ref or commit oid."""
        for ref in (revision, f"refs/heads/{revision}", f"refs/tags/{revision}"):
            if ref in self.refs:
                return self.refs[ref]
        matches = [c.oid for c in self.commits if c.oid.startswith(revision)]
        if len(matches) == 1:
            return matches[0]
        raise KeyError(f"unknown revision {revision!r} in {self.repo_id}")

    def commit(self, revision: str = "main") -> CommitSnapshot:
        """The commit a revision points to."""
        oid = self.resolve(revision)
        return next(c for c in self.commits if c.oid == oid)

    def history(self, revision: str = "main") -> list[CommitSnapshot]:
        """Commits reachable from ``revision``, newest first."""
        by_oid = {c.oid: c for c in self.commits}
        out: list[CommitSnapshot] = []
        oid: str | None = self.resolve(revision)
        while oid is not None:
            out.append(by_oid[oid])
            oid = by_oid[oid].parent
        return out

    def paths(self, revision: str = "main") -> list[str]:
        """Sorted file paths at ``revision``."""
        return sorted(self.commit(revision).files)

    def read(self, path: str, revision: str = "main") -> bytes:
        """Content of ``path`` at ``revision``."""
        entry = self.commit(revision).files[path]
        return self._lfs[entry.lfs_sha256] if entry.lfs_sha256 else self._blobs[entry.oid]

    def files(self, revision: str = "main") -> dict[str, bytes]:
        """All files at ``revision`` with their content."""
        return {path: self.read(path, revision) for path in self.paths(revision)}


@dataclass
class RequestRecord:
    """One HTTP request as seen by the server."""

    method: str
    path: str  # raw (percent-encoded) path as sent on the wire
    query: str
    route: str | None = None  # handler name; None for unknown routes
    status: int | None = None  # None if the connection was dropped
    request_bytes: int = 0
    response_bytes: int = 0
    fault: bool = False
    authorization: str | None = None

    @property
    def decoded_path(self) -> str:
        """The path with percent-escapes decoded."""
        return unquote(self.path)


@dataclass
class Fault:
    """A pending fault injected by :meth:`HubServer.fail_next`."""

    remaining: int
    status: int | None = 500
    path_contains: str | None = None
    method: str | None = None
    drop: bool = False
    after_processing: bool = False
    delay: float = 0.0
    message: str = "Injected fault"
    hits: int = 0
    skip: int = 0  # matching requests let through before the fault starts

    def matches(self, method: str, raw_path: str) -> bool:
        """Whether a request is targeted by this fault."""
        if self.remaining <= 0:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        if self.path_contains is None:
            return True
        return self.path_contains in raw_path or self.path_contains in unquote(raw_path)


class HubError(Exception):
    """An HTTP error answered in the Hub's format (JSON body + X-Error-Code/X-Error-Message)."""

    def __init__(
        self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.extra: dict[str, Any] = {}


def _now() -> str:
    """Current UTC time in the Hub's format (``2024-01-31T12:00:00.000Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _git_blob_oid(data: bytes) -> str:
    """Git blob sha1 of ``data``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    """The Git LFS pointer file for an object."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _tree_oid(entries: Iterable[tuple[str, str]]) -> str:
    """A stable fake tree oid for (path, blob oid) entries."""
    digest = hashlib.sha1(b"tree")
    for path, oid in sorted(entries):
        digest.update(f"{path}\0{oid}\n".encode())
    return digest.hexdigest()


def _looks_binary(sample: bytes) -> bool:
    """Whether a preupload sample looks like binary content."""
    if b"\0" in sample:
        return True
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.start < len(sample) - 3  # a multi-byte char cut at the end of the sample is fine
    return False


def _parse_card_data(readme: bytes) -> dict[str, Any] | None:
    """The YAML front matter of a README as a dict (None if absent); raises on invalid YAML."""
    text = readme.decode("utf-8", errors="replace").lstrip("\ufeff")
    match = re.match(r"^---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|$)", text, re.S)
    if match is None:
        return None
    data = yaml.safe_load(match.group(1))
    return data if isinstance(data, dict) else None


def _lfs_patterns(gitattributes: bytes | None) -> list[str]:
    """Path patterns marked ``filter=lfs`` in a .gitattributes (defaults if none)."""
    text = gitattributes.decode("utf-8", errors="replace") if gitattributes else DEFAULT_GITATTRIBUTES
    return [line.split()[0] for line in text.splitlines() if "filter=lfs" in line and line.split()]


def _matches_any(path: str, patterns: list[str]) -> bool:
    """Gitattributes-style match: patterns without a slash match the basename."""
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(path if "/" in pat else name, pat) for pat in patterns)


def _http_range(header: str | None, total: int) -> tuple[int, int] | None:
    """Parse a single ``bytes=`` range; ``None`` means "whole file". Raises 416 if unsatisfiable."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    start_s, _, end_s = header[len("bytes=") :].strip().partition("-")
    try:
        if start_s == "":
            length = int(end_s)
            start, end = max(total - length, 0), total - 1
        else:
            start = int(start_s)
            end = min(int(end_s), total - 1) if end_s else total - 1
    except ValueError:
        return None
    if start >= total or start > end:
        raise HubError(416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{total}"})
    return start, end


# --------------------------------------------------------------------------------------------
# The ASGI application
# --------------------------------------------------------------------------------------------


@dataclass
class _Ctx:
    """What a handler gets: the request plus the parsed route parameters."""

    request: Request
    body: bytes
    base: str
    user: str | None
    can_write: bool
    token_sent: bool
    repo_type: str = "model"
    repo_id: str = ""
    rest: list[str] = field(default_factory=list)  # raw (still quoted) path segments after the route

    def json(self) -> Any:
        """The request body parsed as JSON (400 if malformed)."""
        try:
            return json.loads(self.body or b"{}")
        except ValueError as err:
            raise HubError(400, f"Invalid JSON body: {err}") from err

    def query(self, name: str) -> str | None:
        """A query-string parameter."""
        return self.request.query_params.get(name)


Handler = Callable[[_Ctx], Awaitable[Response]]


class HubApp:
    """ASGI app implementing the Hub routes over in-memory git-like storage."""

    def __init__(
        self,
        *,
        user: str = DEFAULT_USER,
        orgs: Iterable[str] = DEFAULT_ORGS,
        tokens: Iterable[str] = (DEFAULT_TOKEN,),
        read_only_tokens: Iterable[str] = (READ_TOKEN,),
        lfs_threshold: int = LFS_THRESHOLD,
    ) -> None:
        self.user = user
        self.orgs = list(orgs)
        self.tokens: dict[str, bool] = {t: True for t in tokens} | {t: False for t in read_only_tokens}
        self.lfs_threshold = lfs_threshold
        self.lock = threading.RLock()
        self.repos: dict[tuple[str, str], _Repo] = {}
        self.blobs: dict[str, bytes] = {}
        self.uploads: dict[str, tuple[tuple[str, str], str, int]] = {}  # upload id -> (repo key, oid, size)
        self.requests: list[RequestRecord] = []
        self.faults: list[Fault] = []
        self.errors: list[str] = []  # tracebacks of unexpected exceptions in handlers

    # ---- ASGI entry point: logging, auth, fault injection, dispatch ----------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI request."""
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1").split("?", 1)[0]
        method = request.method.upper()
        record = RequestRecord(
            method=method,
            path=raw_path,
            query=scope.get("query_string", b"").decode("latin-1"),
            authorization=request.headers.get("authorization"),
        )
        with self.lock:
            self.requests.append(record)
        body = await request.body()
        record.request_bytes = len(body)

        route, handler, ctx = self._route(method, raw_path, request, body)
        record.route = route
        with self.lock:
            fault = next((f for f in self.faults if f.matches(method, raw_path)), None)
            if fault is not None and fault.skip:
                fault.skip -= 1
                fault = None
            if fault is not None:
                fault.remaining -= 1
                fault.hits += 1
                record.fault = True
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        fails = fault is not None and (fault.drop or fault.status is not None)
        if fault is not None and fails and not fault.after_processing:
            await self._emit_fault(fault, record, scope, send)
            return

        try:
            if isinstance(ctx, HubError):  # e.g. 401 for an invalid token
                raise ctx
            if handler is None or ctx is None:
                raise HubError(404, f"Not found: the fake Hub has no route for {method} {raw_path}")
            response = await handler(ctx)
        except HubError as err:
            response = self._error_response(err)
        except Exception as err:  # a bug in the fake: answer 500 and keep the traceback for the test
            with self.lock:
                self.errors.append(traceback.format_exc())
            response = self._error_response(HubError(500, f"Fake Hub internal error: {err!r}"))

        if fault is not None and fails and fault.after_processing:
            await self._emit_fault(fault, record, scope, send)
            return
        record.status = response.status_code
        record.response_bytes = len(response.body or b"")
        await response(scope, receive, send)

    async def _emit_fault(self, fault: Fault, record: RequestRecord, scope: Scope, send: Send) -> None:
        """Answer an injected fault: a Hub-style error status, or a dropped connection."""
        if fault.drop:
            record.status = None
            cycle = getattr(send, "__self__", None)
            transport = getattr(cycle, "transport", None)
            if transport is not None:  # uvicorn: close the socket without any response
                cycle.disconnected = True  # type: ignore[union-attr]
                transport.close()
                return
            # Fallback for other servers: promise a body, then abort mid-response.
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1")]})
            raise ConnectionAbortedError("injected connection drop")
        status = fault.status or 500
        response = self._error_response(HubError(status, fault.message))
        record.status = status
        await response(scope, _no_receive, send)

    @staticmethod
    def _error_response(err: HubError) -> Response:
        """Render a HubError as the Hub does: JSON ``{"error"}`` plus X-Error-* headers."""
        headers = {"X-Error-Message": err.message.encode("latin-1", "replace").decode("latin-1")}
        if err.code:
            headers["X-Error-Code"] = err.code
        headers.update(err.headers)
        return JSONResponse({"error": err.message, **err.extra}, status_code=err.status, headers=headers)

    def _auth(self, request: Request) -> tuple[str | None, bool, bool]:
        """Return (user, can_write, token_sent); raise 401 on an invalid token."""
        header = request.headers.get("authorization")
        if not header:
            return None, False, False
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or token not in self.tokens:
            raise HubError(401, INVALID_CREDENTIALS)
        return self.user, self.tokens[token], True

    def _route(
        self, method: str, raw_path: str, request: Request, body: bytes
    ) -> tuple[str | None, Handler | None, _Ctx | HubError | None]:
        """Match the raw path to (route name, handler, context or auth error)."""
        seg = raw_path.strip("/").split("/")
        base = str(request.base_url).rstrip("/")

        def ctx(repo_type: str = "model", repo_id: str = "", rest: list[str] | None = None) -> _Ctx:
            """Build the handler context (raises 401 for an invalid token)."""
            user, can_write, sent = self._auth(request)
            return _Ctx(request, body, base, user, can_write, sent, repo_type, repo_id, rest or [])

        def found(name: str, handler: Handler, *args: Any) -> tuple[str, Handler, _Ctx | HubError]:
            """A matched route; auth errors are deferred to be logged under the route name."""
            try:
                return name, handler, ctx(*args)
            except HubError as err:
                return name, handler, err

        if seg[:1] == ["api"]:
            api = seg[1:]
            if api == ["whoami-v2"] and method == "GET":
                return found("whoami", self.h_whoami)
            if api == ["repos", "create"] and method == "POST":
                return found("create_repo", self.h_create_repo)
            if api == ["repos", "delete"] and method == "DELETE":
                return found("delete_repo", self.h_delete_repo)
            if api == ["agent-harnesses"] and method == "GET":
                return found("agent_harnesses", self.h_agent_harnesses)
            if api == ["validate-yaml"] and method == "POST":
                return found("validate_yaml", self.h_validate_yaml)
            if len(api) == 1 and api[0] in REPO_TYPES and method == "GET":
                return found("list_repos", self.h_list_repos, REPO_TYPES[api[0]])
            if len(api) >= 3 and api[0] in REPO_TYPES:
                repo_type, repo_id = REPO_TYPES[api[0]], f"{unquote(api[1])}/{unquote(api[2])}"
                action, rest = (api[3], api[4:]) if len(api) > 3 else ("", [])
                table: dict[tuple[str, str], tuple[str, Handler]] = {
                    ("GET", ""): ("repo_info", self.h_repo_info),
                    ("GET", "revision"): ("repo_info", self.h_repo_info),
                    ("PUT", "settings"): ("settings", self.h_settings),
                    ("POST", "preupload"): ("preupload", self.h_preupload),
                    ("POST", "commit"): ("commit", self.h_commit),
                    ("POST", "branch"): ("create_branch", self.h_create_branch),
                    ("DELETE", "branch"): ("delete_branch", self.h_delete_branch),
                    ("POST", "tag"): ("create_tag", self.h_create_tag),
                    ("DELETE", "tag"): ("delete_tag", self.h_delete_tag),
                    ("GET", "refs"): ("refs", self.h_refs),
                    ("GET", "commits"): ("commits", self.h_commits),
                    ("GET", "tree"): ("tree", self.h_tree),
                    ("POST", "paths-info"): ("paths_info", self.h_paths_info),
                }
                if (method, action) in table and (action in ("", "refs", "settings") or rest):
                    name, handler = table[(method, action)]
                    return found(name, handler, repo_type, repo_id, rest)
            return None, None, None

        if seg[:1] == ["_lfs_upload"] and len(seg) == 2 and method == "PUT":
            return found("lfs_upload", self.h_lfs_upload, "model", "", seg[1:])

        repo_type = "model"
        if seg and seg[0] in REPO_TYPES and seg[0] != "models":
            repo_type, seg = REPO_TYPES[seg[0]], seg[1:]
        lfs_batch = ["info", "lfs", "objects", "batch"]
        if len(seg) == 6 and seg[1].endswith(".git") and seg[2:] == lfs_batch and method == "POST":
            repo_id = f"{unquote(seg[0])}/{unquote(seg[1])[: -len('.git')]}"
            return found("lfs_batch", self.h_lfs_batch, repo_type, repo_id)
        if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
            return found("resolve", self.h_resolve, repo_type, f"{unquote(seg[0])}/{unquote(seg[1])}", seg[3:])
        return None, None, None

    # ---- helpers on state ---------------------------------------------------------------

    def _repo(self, ctx: _Ctx, *, write: bool = False) -> _Repo:
        """Look a repo up, enforcing visibility (read) or write permission."""
        repo = self.repos.get((ctx.repo_type, ctx.repo_id))
        if write:
            self._check_write(ctx, ctx.repo_id.split("/")[0])
        if repo is None or (repo.private and ctx.user is None):
            status = 401 if ctx.user is None else 404
            raise HubError(status, "Repository not found", code="RepoNotFound")
        return repo

    def _check_write(self, ctx: _Ctx, namespace: str | None) -> None:
        """401 without a token, 403 for a read-only token or a foreign namespace."""
        if ctx.user is None:
            raise HubError(401, "You must be authenticated to perform this action (no token sent)")
        if not ctx.can_write:
            raise HubError(403, "This token is read-only: write access is required")
        if namespace is not None and namespace not in (self.user, *self.orgs):
            raise HubError(403, f"You don't have the rights to write in the namespace '{namespace}'")

    @staticmethod
    def _resolve_ref(repo: _Repo, revision: str) -> tuple[str, str | None]:
        """Return (commit oid, full ref name or None for a raw commit oid)."""
        for ref in (revision, f"refs/heads/{revision}", f"refs/tags/{revision}"):
            if ref.startswith("refs/") and ref in repo.refs:
                return repo.refs[ref], ref
        if re.fullmatch(r"[0-9a-f]{7,40}", revision):
            matches = [oid for oid in repo.commits if oid.startswith(revision)]
            if len(matches) == 1:
                return matches[0], None
        raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")

    def _split_revision(self, repo: _Repo, rest: list[str]) -> tuple[str, list[str]]:
        """Split raw segments into (revision, remaining segments); accepts unquoted ``refs/x/y``."""
        if not rest:
            raise HubError(404, "Missing revision", code="RevisionNotFound")
        first = unquote(rest[0])
        if first == "refs" and len(rest) >= 3:
            candidate = "/".join(unquote(s) for s in rest[:3])
            if candidate in repo.refs:
                return candidate, rest[3:]
        return first, rest[1:]

    def _commit_at(self, repo: _Repo, revision: str) -> _Commit:
        """The commit a revision resolves to (404 RevisionNotFound otherwise)."""
        oid, _ = self._resolve_ref(repo, revision)
        return repo.commits[oid]

    def _read(self, repo: _Repo, entry: FileEntry) -> bytes:
        """Content of a file entry (git blob or LFS object)."""
        return repo.lfs[entry.lfs_sha256] if entry.lfs_sha256 else self.blobs[entry.oid]

    def _new_commit(
        self,
        repo: _Repo,
        parent: str | None,
        files: dict[str, FileEntry],
        title: str,
        description: str,
        author: str,
    ) -> _Commit:
        """Record a commit with a fresh oid (not yet pointed to by any ref)."""
        date = _now()
        nonce = f"{time.time_ns()}-{uuid.uuid4().hex}"
        tree = _tree_oid((p, e.oid) for p, e in files.items())
        oid = hashlib.sha1(f"tree {tree}\nparent {parent}\n{author} {date} {nonce}\n\n{title}".encode()).hexdigest()
        commit = _Commit(oid, parent, files, title, description, author, date)
        repo.commits[oid] = commit
        return commit

    def _add_blob(self, data: bytes) -> FileEntry:
        """Store a regular file's content and return its entry."""
        oid = _git_blob_oid(data)
        self.blobs[oid] = data
        return FileEntry(oid=oid, size=len(data))

    @staticmethod
    def _lfs_entry(sha256: str, size: int) -> FileEntry:
        """Entry for an LFS file: oid of the pointer file, real size, sha256."""
        pointer = _lfs_pointer(sha256, size)
        return FileEntry(oid=_git_blob_oid(pointer), size=size, lfs_sha256=sha256, pointer_size=len(pointer))

    def create_repo_state(self, repo_type: str, repo_id: str, private: bool = False) -> _Repo:
        """Create a repo with the Hub's initial commit (.gitattributes), bypassing HTTP."""
        repo = _Repo(repo_type=repo_type, repo_id=repo_id, private=private, created_at=_now())
        files = {".gitattributes": self._add_blob(DEFAULT_GITATTRIBUTES.encode())}
        commit = self._new_commit(repo, None, files, "initial commit", "", "system")
        repo.refs["refs/heads/main"] = commit.oid
        self.repos[(repo_type, repo_id)] = repo
        return repo

    def _repo_url(self, base: str, repo: _Repo) -> str:
        """Public URL of a repo, e.g. ``{base}/datasets/ns/name``."""
        return f"{base}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}"

    # ---- route handlers -----------------------------------------------------------------

    async def h_whoami(self, ctx: _Ctx) -> Response:
        """GET /api/whoami-v2."""
        if ctx.user is None:
            raise HubError(401, "Invalid username or password.")
        role = "write" if ctx.can_write else "read"
        return JSONResponse(
            {
                "type": "user",
                "id": hashlib.md5(self.user.encode()).hexdigest()[:24],
                "name": self.user,
                "fullname": self.user,
                "email": f"{self.user}@example.com",
                "emailVerified": True,
                "canPay": False,
                "isPro": False,
                "periodEnd": None,
                "avatarUrl": "",
                "orgs": [
                    {"type": "org", "name": org, "fullname": org, "roleInOrg": "admin", "isEnterprise": False}
                    for org in self.orgs
                ],
                "auth": {"type": "access_token", "accessToken": {"displayName": "fake", "role": role}},
            }
        )

    async def h_agent_harnesses(self, ctx: _Ctx) -> Response:
        """GET /api/agent-harnesses: huggingface_hub's agent-detection registry (empty here)."""
        return JSONResponse({"standardEnvVars": [], "harnesses": {}})

    async def h_create_repo(self, ctx: _Ctx) -> Response:
        """POST /api/repos/create."""
        payload = ctx.json()
        name, namespace = payload.get("name"), payload.get("organization") or ctx.user
        repo_type = payload.get("type") or "model"
        if not name or repo_type not in URL_PREFIX:
            raise HubError(400, "Invalid repo name or type")
        self._check_write(ctx, namespace)
        private = payload.get("visibility", "private" if payload.get("private") else "public") != "public"
        repo_id = f"{namespace}/{name}"
        with self.lock:
            existing = self.repos.get((repo_type, repo_id))
            if existing is not None:
                err = HubError(409, f"You already created this {repo_type} repo")
                err.extra["url"] = self._repo_url(ctx.base, existing)
                raise err
            repo = self.create_repo_state(repo_type, repo_id, private)
        return JSONResponse({"url": self._repo_url(ctx.base, repo), "name": repo_id, "id": uuid.uuid4().hex})

    async def h_delete_repo(self, ctx: _Ctx) -> Response:
        """DELETE /api/repos/delete."""
        payload = ctx.json()
        namespace = payload.get("organization") or ctx.user
        self._check_write(ctx, namespace)
        key = (payload.get("type") or "model", f"{namespace}/{payload.get('name')}")
        with self.lock:
            if key not in self.repos:
                raise HubError(404, "Repository not found", code="RepoNotFound")
            del self.repos[key]
        return Response(status_code=200)

    async def h_settings(self, ctx: _Ctx) -> Response:
        """PUT /api/{type}s/{repo}/settings (visibility, gating)."""
        payload = ctx.json()
        with self.lock:
            repo = self._repo(ctx, write=True)
            if "private" in payload:
                repo.private = bool(payload["private"])
            if "visibility" in payload:
                repo.private = payload["visibility"] != "public"
            if "gated" in payload:
                repo.gated = bool(payload["gated"])
        return JSONResponse({"private": repo.private})

    async def h_validate_yaml(self, ctx: _Ctx) -> Response:
        """POST /api/validate-yaml: the README front matter must be a YAML mapping."""
        content = ctx.json().get("content", "")
        try:
            _parse_card_data(content.encode())
        except yaml.YAMLError as err:
            return JSONResponse({"errors": [{"message": f"Invalid YAML: {err}"}], "warnings": []}, status_code=400)
        return JSONResponse({"errors": [], "warnings": []})

    async def h_list_repos(self, ctx: _Ctx) -> Response:
        """GET /api/{type}s?author=&search= (visible repos only)."""
        author, search = ctx.query("author"), ctx.query("search")
        with self.lock:
            out = [
                {
                    "id": r.repo_id,
                    "author": r.repo_id.split("/")[0],
                    "private": r.private,
                    "sha": r.refs["refs/heads/main"],
                }
                for (t, _), r in sorted(self.repos.items())
                if t == ctx.repo_type
                and (not r.private or ctx.user is not None)
                and (author is None or r.repo_id.split("/")[0] == author)
                and (search is None or search in r.repo_id)
            ]
        return JSONResponse(out)

    async def h_repo_info(self, ctx: _Ctx) -> Response:
        """GET /api/{type}s/{repo}[/revision/{rev}]."""
        with self.lock:
            repo = self._repo(ctx)
            revision = unquote("/".join(ctx.rest)) if ctx.rest else "main"
            commit = self._commit_at(repo, revision)
            blobs = ctx.query("blobs") in ("1", "true", "True")
            siblings = []
            for path, entry in sorted(commit.files.items()):
                sibling: dict[str, Any] = {"rfilename": path}
                if blobs:
                    sibling |= {"size": entry.size, "blobId": entry.oid}
                    if entry.is_lfs:
                        sibling["lfs"] = {
                            "size": entry.size,
                            "sha256": entry.lfs_sha256,
                            "pointerSize": entry.pointer_size,
                        }
                siblings.append(sibling)
            card = None
            if "README.md" in commit.files:
                try:
                    card = _parse_card_data(self._read(repo, commit.files["README.md"]))
                except yaml.YAMLError:
                    card = None
            info: dict[str, Any] = {
                "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
                "id": repo.repo_id,
                "author": repo.repo_id.split("/")[0],
                "sha": commit.oid,
                "lastModified": commit.date,
                "createdAt": repo.created_at,
                "private": repo.private,
                "gated": repo.gated,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": list((card or {}).get("tags") or []),
                "siblings": siblings,
                "usedStorage": sum(e.size for e in commit.files.values()),
            }
            if card is not None:
                info["cardData"] = card
            if repo.repo_type == "model":
                info["modelId"] = repo.repo_id
            if repo.repo_type == "space":
                info |= {"sdk": (card or {}).get("sdk", "static"), "runtime": None}
        return JSONResponse(info)

    async def h_preupload(self, ctx: _Ctx) -> Response:
        """POST /api/{type}s/{repo}/preupload/{rev}: the server decides regular vs LFS."""
        files = ctx.json().get("files")
        if not isinstance(files, list):
            raise HubError(400, "Expected a 'files' list")
        with self.lock:
            repo = self._repo(ctx, write=True)
            revision = unquote("/".join(ctx.rest))
            try:
                commit: _Commit | None = self._commit_at(repo, revision)
            except HubError:
                if ctx.query("create_pr") != "1":
                    raise
                commit = None
            current = commit.files if commit else {}
            attrs = current.get(".gitattributes")
            patterns = _lfs_patterns(self._read(repo, attrs) if attrs else None)
            out = []
            for item in files:
                path, size = item["path"], int(item.get("size", 0))
                sample = base64.b64decode(item.get("sample") or b"")
                lfs = _matches_any(path, patterns) or size > self.lfs_threshold or _looks_binary(sample)
                entry = current.get(path)
                remote_oid = (entry.lfs_sha256 or entry.oid) if entry else None
                out.append(
                    {"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": remote_oid}
                )
        return JSONResponse({"files": out, "commitOid": commit.oid if commit else None})

    async def h_lfs_batch(self, ctx: _Ctx) -> Response:
        """POST /{prefix}{repo}.git/info/lfs/objects/batch (basic transfer, upload only)."""
        payload = ctx.json()
        if payload.get("operation") != "upload":
            raise HubError(400, "The fake Hub only implements LFS uploads")
        with self.lock:
            repo = self._repo(ctx, write=True)
            objects = []
            for obj in payload.get("objects", []):
                oid, size = str(obj["oid"]), int(obj["size"])
                item: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
                if oid not in repo.lfs:
                    upload_id = secrets.token_urlsafe(16)
                    self.uploads[upload_id] = ((repo.repo_type, repo.repo_id), oid, size)
                    item["actions"] = {"upload": {"href": f"{ctx.base}/_lfs_upload/{upload_id}", "expires_in": 3600}}
                objects.append(item)
        return JSONResponse(
            {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
            media_type="application/vnd.git-lfs+json",
        )

    async def h_lfs_upload(self, ctx: _Ctx) -> Response:
        """PUT /_lfs_upload/{id}: presigned-style upload target, sha256 and size verified."""
        with self.lock:
            target = self.uploads.get(ctx.rest[0])
            if target is None:
                raise HubError(403, "Unknown or expired upload URL")
            key, oid, size = target
            repo = self.repos.get(key)
            if repo is None:
                raise HubError(404, "Repository not found", code="RepoNotFound")
            if len(ctx.body) != size or hashlib.sha256(ctx.body).hexdigest() != oid:
                raise HubError(400, f"Uploaded content does not match oid {oid} / size {size}")
            if oid not in repo.lfs:
                repo.lfs[oid] = ctx.body
                repo.lfs_pending.add(oid)
        return Response(status_code=200, headers={"ETag": f'"{oid}"'})

    async def h_commit(self, ctx: _Ctx) -> Response:
        """POST /api/{type}s/{repo}/commit/{rev}: NDJSON header/file/lfsFile/deletedFile/deletedFolder."""
        try:
            lines = [json.loads(line) for line in ctx.body.splitlines() if line.strip()]
        except ValueError as err:
            raise HubError(400, f"Invalid NDJSON body: {err}") from err
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first NDJSON line must be the commit header")
        header = lines[0].get("value") or {}
        title = str(header.get("summary") or "").strip()
        if not title:
            raise HubError(400, "Commit summary (title) is required")
        with self.lock:
            repo = self._repo(ctx, write=True)
            revision = unquote("/".join(ctx.rest))
            oid, ref = self._resolve_ref(repo, revision)
            if ref is None or not (ref.startswith("refs/heads/") or ref.startswith("refs/pr/")):
                raise HubError(400, f"Cannot commit to '{revision}': not a branch")
            pr_num: int | None = None
            if ctx.query("create_pr") == "1":
                pr_num = 1 + sum(1 for r in repo.refs if r.startswith("refs/pr/"))
                ref = f"refs/pr/{pr_num}"
            parent_commit = header.get("parentCommit")
            if parent_commit and parent_commit != oid:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(repo.commits[oid].files)
            uploaded, newly_referenced = 0, set()
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value") or {}
                path = str(value.get("path", "")).strip("/") if key != "deletedFolder" else str(value.get("path", ""))
                if key in ("file", "lfsFile", "deletedFile") and (not path or ".." in path.split("/")):
                    raise HubError(400, f"Invalid path {path!r}")
                if key == "file":
                    content = value.get("content", "")
                    data = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                    files[path] = self._add_blob(data)
                    uploaded += len(data)
                elif key == "lfsFile":
                    sha, size = value.get("oid"), value.get("size")
                    if value.get("algo", "sha256") != "sha256" or sha not in repo.lfs:
                        raise HubError(400, f"LFS object {sha} for {path} was not uploaded to this repo")
                    if size is not None and int(size) != len(repo.lfs[sha]):
                        raise HubError(400, f"LFS object size mismatch for {path}")
                    files[path] = self._lfs_entry(sha, len(repo.lfs[sha]))
                    if sha in repo.lfs_pending and sha not in newly_referenced:
                        newly_referenced.add(sha)
                        uploaded += len(repo.lfs[sha])
                elif key == "deletedFile":
                    if path not in files:
                        raise HubError(404, "A file with this name doesn't exist", code="EntryNotFound")
                    del files[path]
                elif key == "deletedFolder":
                    prefix = path.strip("/") + "/"
                    doomed = [p for p in files if p.startswith(prefix) or prefix == "/"]
                    if not doomed:
                        raise HubError(404, "A folder with this name doesn't exist", code="EntryNotFound")
                    for p in doomed:
                        del files[p]
                else:
                    raise HubError(400, f"Unknown NDJSON operation key {key!r}")
            commit = self._new_commit(
                repo, oid, files, title, str(header.get("description") or ""), ctx.user or "anonymous"
            )
            commit.uploaded_bytes, commit.request_bytes = uploaded, len(ctx.body)
            repo.lfs_pending -= newly_referenced
            repo.refs[ref] = commit.oid
        repo_url = self._repo_url(ctx.base, repo)
        return JSONResponse(
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{repo_url}/commit/{commit.oid}",
                "hookOutput": "",
                "pullRequestUrl": f"{repo_url}/discussions/{pr_num}" if pr_num else None,
            }
        )

    async def h_create_branch(self, ctx: _Ctx) -> Response:
        """POST /api/{type}s/{repo}/branch/{name} {startingPoint}."""
        name = unquote("/".join(ctx.rest))
        if not name or name.startswith("refs/") or ".." in name:
            raise HubError(400, f"Invalid branch name {name!r}")
        starting = ctx.json().get("startingPoint")
        with self.lock:
            repo = self._repo(ctx, write=True)
            if f"refs/heads/{name}" in repo.refs:
                raise HubError(409, f"Reference already exists: refs/heads/{name}")
            oid, _ = self._resolve_ref(repo, starting) if starting else self._resolve_ref(repo, "main")
            repo.refs[f"refs/heads/{name}"] = oid
        return JSONResponse({"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid})

    async def h_delete_branch(self, ctx: _Ctx) -> Response:
        """DELETE /api/{type}s/{repo}/branch/{name}."""
        name = unquote("/".join(ctx.rest))
        with self.lock:
            repo = self._repo(ctx, write=True)
            if name == "main":
                raise HubError(403, "Cannot delete the default branch")
            if f"refs/heads/{name}" not in repo.refs:
                raise HubError(404, f"Invalid rev id: {name}", code="RevisionNotFound")
            del repo.refs[f"refs/heads/{name}"]
        return Response(status_code=200)

    async def h_create_tag(self, ctx: _Ctx) -> Response:
        """POST /api/{type}s/{repo}/tag/{rev} {tag, message}; 409 if the tag exists."""
        payload = ctx.json()
        tag = str(payload.get("tag") or "")
        if not tag or tag.startswith("refs/") or ".." in tag:
            raise HubError(400, f"Invalid tag name {tag!r}")
        with self.lock:
            repo = self._repo(ctx, write=True)
            oid, _ = self._resolve_ref(repo, unquote("/".join(ctx.rest)))
            if f"refs/tags/{tag}" in repo.refs:
                raise HubError(409, f"Tag reference exists already: refs/tags/{tag}")
            repo.refs[f"refs/tags/{tag}"] = oid
            repo.tag_messages[tag] = str(payload.get("message") or "")
        return JSONResponse({"name": tag, "ref": f"refs/tags/{tag}", "targetCommit": oid})

    async def h_delete_tag(self, ctx: _Ctx) -> Response:
        """DELETE /api/{type}s/{repo}/tag/{tag}."""
        tag = unquote("/".join(ctx.rest))
        with self.lock:
            repo = self._repo(ctx, write=True)
            if f"refs/tags/{tag}" not in repo.refs:
                raise HubError(404, f"Invalid rev id: {tag}", code="RevisionNotFound")
            del repo.refs[f"refs/tags/{tag}"]
            repo.tag_messages.pop(tag, None)
        return Response(status_code=200)

    async def h_refs(self, ctx: _Ctx) -> Response:
        """GET /api/{type}s/{repo}/refs."""
        groups: dict[str, list[dict[str, str]]] = {"branches": [], "converts": [], "tags": [], "pullRequests": []}
        prefixes = {
            "refs/heads/": "branches",
            "refs/convert/": "converts",
            "refs/tags/": "tags",
            "refs/pr/": "pullRequests",
        }
        with self.lock:
            repo = self._repo(ctx)
            for ref, oid in sorted(repo.refs.items()):
                for prefix, group in prefixes.items():
                    if ref.startswith(prefix):
                        groups[group].append({"name": ref[len(prefix) :], "ref": ref, "targetCommit": oid})
        if ctx.query("include_prs") is None:
            groups["pullRequests"] = []
        return JSONResponse(groups)

    async def h_commits(self, ctx: _Ctx) -> Response:
        """GET /api/{type}s/{repo}/commits/{rev}: history, newest first."""
        formatted = "formatted" in ctx.request.query_params.getlist("expand[]")
        with self.lock:
            repo = self._repo(ctx)
            oid: str | None = self._resolve_ref(repo, unquote("/".join(ctx.rest)))[0]
            out = []
            while oid is not None:
                c = repo.commits[oid]
                item: dict[str, Any] = {
                    "id": c.oid,
                    "title": c.title,
                    "message": c.description,
                    "authors": [{"user": c.author, "avatar": ""}],
                    "date": c.date,
                }
                if formatted:
                    item["formatted"] = {"title": f"<p>{c.title}</p>", "message": f"<p>{c.description}</p>"}
                out.append(item)
                oid = c.parent
        return JSONResponse(out)

    def _path_info(self, repo: _Repo, commit: _Commit, path: str, expand: bool) -> dict[str, Any] | None:
        """Tree/paths-info item for a file or directory (None if absent)."""
        entry = commit.files.get(path)
        if entry is not None:
            info: dict[str, Any] = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
            if entry.is_lfs:
                info["lfs"] = {"oid": entry.lfs_sha256, "size": entry.size, "pointerSize": entry.pointer_size}
        else:
            prefix = path.rstrip("/") + "/" if path else ""
            inside = [(p, e.oid) for p, e in commit.files.items() if p.startswith(prefix)]
            if not inside:
                return None
            info = {"type": "directory", "oid": _tree_oid(inside), "size": 0, "path": path}
        if expand:
            last = self._last_commit(repo, commit, path)
            info["lastCommit"] = {"id": last.oid, "title": last.title, "date": last.date}
        return info

    @staticmethod
    def _last_commit(repo: _Repo, commit: _Commit, path: str) -> _Commit:
        """Newest commit in the history of ``commit`` that changed ``path``."""

        def state(c: _Commit) -> list[tuple[str, str]]:
            """Entries at or under ``path`` in a commit."""
            prefix = path.rstrip("/") + "/"
            return sorted((p, e.oid) for p, e in c.files.items() if p == path or p.startswith(prefix))

        current = commit
        while current.parent is not None:
            parent = repo.commits[current.parent]
            if state(parent) != state(current):
                return current
            current = parent
        return current

    async def h_tree(self, ctx: _Ctx) -> Response:
        """GET /api/{type}s/{repo}/tree/{rev}[/{path}]?recursive=&expand=."""
        recursive = ctx.query("recursive") in ("1", "true", "True")
        expand = ctx.query("expand") in ("1", "true", "True")
        with self.lock:
            repo = self._repo(ctx)
            revision, rest = self._split_revision(repo, ctx.rest)
            commit = self._commit_at(repo, revision)
            base = unquote("/".join(rest)).strip("/")
            if base in commit.files:
                raise HubError(404, f"{base} is a file, not a directory", code="EntryNotFound")
            prefix = base + "/" if base else ""
            names: set[str] = set()
            for path in commit.files:
                if not path.startswith(prefix):
                    continue
                parts = path[len(prefix) :].split("/")
                depth = len(parts) if recursive else 1
                for i in range(1, depth + 1):
                    names.add(prefix + "/".join(parts[:i]))
            if base and not names:
                raise HubError(404, f"Path {base} not found at {revision}", code="EntryNotFound")
            infos = [self._path_info(repo, commit, name, expand) for name in sorted(names)]
        # The Hub lists directories first within a level; clients only rely on content.
        return JSONResponse([i for i in infos if i is not None])

    async def h_paths_info(self, ctx: _Ctx) -> Response:
        """POST /api/{type}s/{repo}/paths-info/{rev} (form or JSON body)."""
        if ctx.request.headers.get("content-type", "").startswith("application/json"):
            payload = ctx.json()
            paths, expand = list(payload.get("paths", [])), bool(payload.get("expand"))
        else:
            form = parse_qs(ctx.body.decode(), keep_blank_values=True)
            paths, expand = form.get("paths", []), form.get("expand", ["False"])[0] in ("1", "true", "True")
        with self.lock:
            repo = self._repo(ctx)
            revision, _ = self._split_revision(repo, ctx.rest)
            commit = self._commit_at(repo, revision)
            infos = [self._path_info(repo, commit, p.strip("/"), expand) for p in paths]
        return JSONResponse([i for i in infos if i is not None])

    async def h_resolve(self, ctx: _Ctx) -> Response:
        """HEAD|GET /{prefix}{repo}/resolve/{rev}/{path} with Hub headers and Range support."""
        with self.lock:
            repo = self._repo(ctx)
            revision, rest = self._split_revision(repo, ctx.rest)
            commit = self._commit_at(repo, revision)
            path = unquote("/".join(rest))
            entry = commit.files.get(path)
            if entry is None:
                raise HubError(404, "Entry not found", code="EntryNotFound", headers={"X-Repo-Commit": commit.oid})
            data = self._read(repo, entry)
        etag = f'"{entry.lfs_sha256 or entry.oid}"'
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": etag,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}",
        }
        if entry.is_lfs:
            headers |= {"X-Linked-Etag": etag, "X-Linked-Size": str(entry.size)}
        status = 200
        byte_range = _http_range(ctx.request.headers.get("range"), len(data))
        if byte_range is not None:
            start, end = byte_range
            data = data[start : end + 1]
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
        headers["Content-Length"] = str(len(data))
        if ctx.request.method == "HEAD":
            return Response(content=b"", status_code=status, headers=headers)
        return Response(content=data, status_code=status, headers=headers)


async def _no_receive() -> dict[str, Any]:
    """ASGI receive callable for responses sent after the body was consumed."""
    return {"type": "http.disconnect"}


# --------------------------------------------------------------------------------------------
# Runner
# --------------------------------------------------------------------------------------------


class HubServer:
    """Run :class:`HubApp` with uvicorn in a background thread on a free 127.0.0.1 port.

    Use as a context manager or call :meth:`start` / :meth:`stop`. ``token`` (write) and
    ``read_token`` (read-only) are accepted; any other bearer token gets a 401.
    """

    def __init__(
        self,
        *,
        user: str = DEFAULT_USER,
        orgs: Iterable[str] = DEFAULT_ORGS,
        tokens: Iterable[str] = (DEFAULT_TOKEN,),
        read_only_tokens: Iterable[str] = (READ_TOKEN,),
        lfs_threshold: int = LFS_THRESHOLD,
    ) -> None:
        tokens, read_only_tokens = list(tokens), list(read_only_tokens)
        self.app = HubApp(
            user=user, orgs=orgs, tokens=tokens, read_only_tokens=read_only_tokens, lfs_threshold=lfs_threshold
        )
        self.token = tokens[0] if tokens else None
        self.read_token = read_only_tokens[0] if read_only_tokens else None
        self.user = user
        self.orgs = list(orgs)
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (use as ``HF_ENDPOINT``)."""
        if not self.port:
            raise RuntimeError("HubServer is not started")
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> HubServer:
        """Start serving; returns ``self`` once the port accepts connections."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            proxy_headers=False,
            backlog=2048,
            timeout_keep_alive=30,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"hub-server-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("HubServer failed to start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server and wait for its thread."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)
        self._server = self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- request log and fault injection ------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request received so far (live list; ``.clear()`` it to reset)."""
        return self.app.requests

    @property
    def unknown_requests(self) -> list[RequestRecord]:
        """Requests that matched no route (answered 404)."""
        with self.app.lock:
            return [r for r in self.app.requests if r.route is None and not r.fault]

    def calls(self, route: str) -> list[RequestRecord]:
        """Requests handled by ``route`` (e.g. ``"commit"``, ``"resolve"``, ``"lfs_upload"``)."""
        with self.app.lock:
            return [r for r in self.app.requests if r.route == route]

    def fail_next(
        self,
        n: int = 1,
        status: int | None = 500,
        path_contains: str | None = None,
        *,
        method: str | None = None,
        drop: bool = False,
        after_processing: bool = False,
        delay: float = 0.0,
        message: str = "Injected fault",
        skip: int = 0,
    ) -> Fault:
        """Fail the next ``n`` matching requests.

        ``status``: answer this HTTP status (Hub-style JSON error) instead of handling the request;
        ``None`` with ``delay`` only slows the request down.
        ``drop``: close the connection without any response instead.
        ``after_processing``: handle the request first (state changes happen), then fail/drop the
        response — a lost response. ``delay``: sleep this long before answering. ``path_contains``
        matches the raw or the decoded path; ``method`` restricts to one HTTP method. ``skip``: let
        that many matching requests through first (e.g. fail the 4th commit, whatever the timing).
        """
        fault = Fault(
            remaining=n,
            status=status,
            path_contains=path_contains,
            method=method,
            drop=drop,
            after_processing=after_processing,
            delay=delay,
            message=message,
            skip=skip,
        )
        with self.app.lock:
            self.app.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Forget all pending faults."""
        with self.app.lock:
            self.app.faults.clear()

    # ---- state --------------------------------------------------------------------------

    def create_repo(self, repo_id: str, repo_type: str = "dataset", private: bool = False) -> None:
        """Create a repo directly (no HTTP), e.g. in a namespace the test user cannot write to."""
        with self.app.lock:
            self.app.create_repo_state(repo_type, repo_id, private)

    def repo_ids(self, repo_type: str | None = None) -> list[str]:
        """Ids of existing repos (optionally of one type)."""
        with self.app.lock:
            return sorted(rid for (t, rid) in self.app.repos if repo_type in (None, t))

    def repo(self, repo_id: str, repo_type: str | None = None) -> RepoSnapshot:
        """Snapshot of a repo: commits, branches, tags, files per revision, private flag, bytes.

        ``repo_type`` may be omitted when the id is unambiguous across types.
        """
        with self.app.lock:
            keys = [k for k in self.app.repos if k[1] == repo_id and repo_type in (None, k[0])]
            if len(keys) != 1:
                raise KeyError(f"{len(keys)} repos match {repo_id!r} (type {repo_type})")
            repo = self.app.repos[keys[0]]
            commits = list(repo.commits.values())[::-1]  # creation order, newest first
            oids = {e.oid for c in commits for e in c.files.values() if not e.is_lfs}
            return RepoSnapshot(
                repo_id=repo.repo_id,
                repo_type=repo.repo_type,
                private=repo.private,
                commits=[
                    CommitSnapshot(
                        c.oid,
                        c.parent,
                        c.title,
                        c.description,
                        c.author,
                        c.date,
                        dict(c.files),
                        c.uploaded_bytes,
                        c.request_bytes,
                    )
                    for c in commits
                ],
                branches={r[len("refs/heads/") :]: o for r, o in repo.refs.items() if r.startswith("refs/heads/")},
                tags={r[len("refs/tags/") :]: o for r, o in repo.refs.items() if r.startswith("refs/tags/")},
                tag_messages=dict(repo.tag_messages),
                refs=dict(repo.refs),
                _blobs={oid: self.app.blobs[oid] for oid in oids},
                _lfs=dict(repo.lfs),
            )

    def set_ref(self, repo_id: str, ref: str, revision: str, repo_type: str = "dataset") -> None:
        """Point a full ref (e.g. ``refs/convert/parquet``) at a revision, as the Hub's bots do."""
        with self.app.lock:
            repo = self.app.repos[(repo_type, repo_id)]
            repo.refs[ref] = HubApp._resolve_ref(repo, revision)[0]
