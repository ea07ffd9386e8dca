"""Run the real argilla-server 2.8 for tests, with a search engine backed by its own SQLite database.

This file runs INSIDE the argilla-server venv (see ``.ci/argilla-setup.sh``), never in the main
test process. Elasticsearch/OpenSearch cannot run here, so :class:`SQLiteSearchEngine` is registered
in argilla-server's own ``SearchEngine`` registry: indexing calls are no-ops and every query
(search, filters, sort, similarity, progress, metadata metrics) reads argilla's database directly,
mirroring the Elasticsearch engine's semantics.

Subcommands::

    launcher.py bootstrap --workspace argilla --user argilla:owner:owner.apikey ...
    launcher.py serve --host 127.0.0.1 --port 6900
    launcher.py worker
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

ENGINE_NAME = "hfadvisor-sqlite"

# Must be set before argilla_server reads its settings.
os.environ.setdefault("ARGILLA_SEARCH_ENGINE", ENGINE_NAME)
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from argilla_server.enums import (  # noqa: E402
    MetadataPropertyType,
    RecordSortField,
    ResponseStatusFilter,
    SimilarityOrder,
    SortOrder,
)
from argilla_server.models import (  # noqa: E402
    Dataset,
    MetadataProperty,
    Question,
    Record,
    Response,
    Suggestion,
    User,
    Vector,
    VectorSettings,
)
from argilla_server.models import Field as DatasetField  # noqa: E402
from argilla_server.search_engine.base import (  # noqa: E402
    AndFilter,
    Filter,
    FilterScope,
    FloatMetadataMetrics,
    IntegerMetadataMetrics,
    MetadataFilterScope,
    MetadataMetrics,
    Order,
    RangeFilter,
    RecordFilterScope,
    ResponseFilterScope,
    SearchEngine,
    SearchResponseItem,
    SearchResponses,
    SuggestionFilterScope,
    TermsFilter,
    TermsMetrics,
    TextQuery,
)
from sqlalchemy import func, select  # noqa: E402

_WORD = re.compile(r"\w+", re.UNICODE)
_CLAUSE = re.compile(r'(-?)"([^"]*)"|(-?)(\S+)')


# --------------------------------------------------------------------------------------------------
# Documents: what Elasticsearch would have indexed for one record, read from SQLite on demand.
# --------------------------------------------------------------------------------------------------


@dataclass
class _Doc:
    """One record as the search engine sees it."""

    id: UUID
    external_id: str | None
    status: str
    inserted_at: datetime
    updated_at: datetime
    metadata: dict[str, Any]
    fields: dict[str, Any] = field(default_factory=dict)
    responses: list[dict[str, Any]] = field(default_factory=list)
    suggestions: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class _Needs:
    """Which related rows a query needs loaded."""

    fields: bool = False
    responses: bool = False
    suggestions: bool = False


def _session() -> Any:
    """A fresh session on argilla's database (imported late so settings are final)."""
    from argilla_server.database import AsyncSessionLocal

    return AsyncSessionLocal()


def _scopes(filter: Filter | None, sort: Sequence[Order] | None) -> Iterable[FilterScope]:
    """Every scope used by a filter tree and a sort list."""
    stack: list[Any] = [filter] if filter is not None else []
    while stack:
        item = stack.pop()
        if isinstance(item, AndFilter):
            stack.extend(item.filters)
        else:
            yield item.scope
    for order in sort or []:
        yield order.scope


def _needs_for(filter: Filter | None, sort: Sequence[Order] | None, text: bool) -> _Needs:
    """Work out which relations must be loaded to answer a query."""
    needs = _Needs(fields=text)
    for scope in _scopes(filter, sort):
        needs.responses |= isinstance(scope, ResponseFilterScope)
        needs.suggestions |= isinstance(scope, SuggestionFilterScope)
    return needs


async def _load_docs(dataset_id: UUID, needs: _Needs) -> list[_Doc]:
    """Read a dataset's records (and the relations asked for) in insertion order."""
    async with _session() as db:
        columns = [
            Record.id,
            Record.external_id,
            Record.status,
            Record.inserted_at,
            Record.updated_at,
            Record.metadata_,
        ]
        if needs.fields:
            columns.append(Record.fields)
        rows = await db.execute(
            select(*columns).where(Record.dataset_id == dataset_id).order_by(Record.inserted_at, Record.id)
        )
        docs: dict[UUID, _Doc] = {}
        for row in rows:
            docs[row.id] = _Doc(
                id=row.id,
                external_id=row.external_id,
                status=str(row.status),
                inserted_at=row.inserted_at,
                updated_at=row.updated_at,
                metadata=dict(row.metadata_ or {}),
                fields=dict(row.fields or {}) if needs.fields else {},
            )
        if needs.responses:
            rows = await db.execute(
                select(Response.record_id, Response.user_id, Response.status, Response.values)
                .join(Record, Response.record_id == Record.id)
                .where(Record.dataset_id == dataset_id)
            )
            for row in rows:
                values = {name: (v or {}).get("value") for name, v in (row.values or {}).items()}
                docs[row.record_id].responses.append(
                    {"user_id": row.user_id, "status": str(row.status), "values": values}
                )
        if needs.suggestions:
            rows = await db.execute(
                select(
                    Suggestion.record_id,
                    Question.name,
                    Suggestion.value,
                    Suggestion.score,
                    Suggestion.agent,
                    Suggestion.type,
                )
                .join(Question, Suggestion.question_id == Question.id)
                .join(Record, Suggestion.record_id == Record.id)
                .where(Record.dataset_id == dataset_id)
            )
            for row in rows:
                docs[row.record_id].suggestions[row.name] = {
                    "value": row.value,
                    "score": row.score,
                    "agent": row.agent,
                    "type": None if row.type is None else str(row.type),
                }
    return list(docs.values())


# --------------------------------------------------------------------------------------------------
# Filter, sort and text-query evaluation (Elasticsearch semantics, evaluated in Python).
# --------------------------------------------------------------------------------------------------


def _flatten(value: Any) -> list[Any]:
    """A field's values as a list (keyword arrays match on any element; ``None`` is missing)."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [v for v in value if v is not None]
    return [value]


def _scope_values(doc: _Doc, scope: FilterScope) -> list[Any]:
    """The values a non-response scope selects on a document."""
    if isinstance(scope, MetadataFilterScope):
        return _flatten(doc.metadata.get(scope.metadata_property))
    if isinstance(scope, SuggestionFilterScope):
        suggestion = doc.suggestions.get(scope.question)
        return _flatten(suggestion.get(scope.property)) if suggestion else []
    if isinstance(scope, RecordFilterScope):
        prop = RecordSortField(scope.property)
        value: Any = {
            RecordSortField.id: str(doc.id),
            RecordSortField.external_id: doc.external_id,
            RecordSortField.inserted_at: doc.inserted_at,
            RecordSortField.updated_at: doc.updated_at,
            RecordSortField.status: doc.status,
        }[prop]
        return _flatten(value)
    raise ValueError(f"Cannot process request for search scope {scope}")


def _user_responses(doc: _Doc, user: User | None) -> list[dict[str, Any]]:
    """The document's responses, restricted to one user when given."""
    if user is None:
        return doc.responses
    return [r for r in doc.responses if r["user_id"] == user.id]


def _to_datetime(bound: Any) -> datetime:
    """Parse a range bound for a date field (ISO string or epoch milliseconds), as naive UTC."""
    if isinstance(bound, int | float):
        return datetime.fromtimestamp(bound / 1000, tz=UTC).replace(tzinfo=None)
    parsed = datetime.fromisoformat(str(bound).replace("Z", "+00:00"))
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def _term_equals(value: Any, term: str) -> bool:
    """Whether an indexed value equals a ``terms`` filter value (sent as a string)."""
    if isinstance(value, bool):
        return str(value).lower() == term.lower()
    if isinstance(value, int | float):
        try:
            return float(term) == float(value)
        except ValueError:
            return False
    return str(value) == term


def _in_range(value: Any, ge: Any, le: Any) -> bool:
    """Whether a value lies within inclusive bounds, compared like its indexed type."""
    if isinstance(value, datetime):
        lo, hi = (None if b is None else _to_datetime(b) for b in (ge, le))
    elif isinstance(value, int | float) and not isinstance(value, bool):
        lo, hi = (None if b is None else float(b) for b in (ge, le))
    else:
        value = str(value)
        lo, hi = (None if b is None else str(b) for b in (ge, le))
    return (lo is None or value >= lo) and (hi is None or value <= hi)


def _values_match(values: list[Any], filter: TermsFilter | RangeFilter) -> bool:
    """Whether any value satisfies a terms or range filter."""
    if isinstance(filter, TermsFilter):
        return any(_term_equals(v, t) for v in values for t in filter.values)
    if isinstance(filter, RangeFilter):
        return any(_in_range(v, filter.ge, filter.le) for v in values)
    raise ValueError(f"Cannot process request for filter {filter}")


def _response_matches(doc: _Doc, filter: TermsFilter | RangeFilter, scope: ResponseFilterScope) -> bool:
    """Response filters: on a question's value, or on status (where ``pending`` means no response)."""
    responses = _user_responses(doc, scope.user)
    if scope.question:
        return any(_values_match(_flatten(r["values"].get(scope.question)), filter) for r in responses)
    if scope.property == "status" and isinstance(filter, TermsFilter):
        statuses = {str(v) for v in filter.values}
        if ResponseStatusFilter.pending.value in statuses and not responses:
            return True
        return any(r["status"] in statuses for r in responses)
    raise ValueError(f"Cannot process filter scope {scope}")


def _matches(doc: _Doc, filter: Filter) -> bool:
    """Evaluate a filter tree on one document."""
    if isinstance(filter, AndFilter):
        return all(_matches(doc, f) for f in filter.filters)
    if isinstance(filter.scope, ResponseFilterScope):
        return _response_matches(doc, filter, filter.scope)
    return _values_match(_scope_values(doc, filter.scope), filter)


def _sortable(value: Any) -> tuple[int, Any]:
    """A key that orders numbers, dates and strings without comparing across types."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value))
    if isinstance(value, datetime):
        return (1, value)
    return (2, str(value))


def _sort_value(doc: _Doc, order: Order) -> tuple[int, Any] | None:
    """The value a document sorts by (multi-valued: min ascending, max descending; responses: avg)."""
    scope = order.scope
    if isinstance(scope, ResponseFilterScope):
        name = scope.question or scope.property or ""
        responses = _user_responses(doc, scope.user)
        values: list[Any] = []
        for r in responses:
            values.extend(_flatten(r["status"] if name == "status" else r["values"].get(name)))
        numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if numbers and len(numbers) == len(values):
            return (0, sum(numbers) / len(numbers))
    else:
        values = _scope_values(doc, scope)
    if not values:
        return None
    keys = [_sortable(v) for v in values]
    return min(keys) if order.order == SortOrder.asc else max(keys)


def _apply_sort(docs: list[_Doc], sort: Sequence[Order]) -> list[_Doc]:
    """Stable multi-key sort; documents missing a key go last in either direction, like ES."""
    for order in reversed(sort):
        keyed = [(doc, _sort_value(doc, order)) for doc in docs]
        present = [(d, k) for d, k in keyed if k is not None]
        present.sort(key=lambda item: item[1], reverse=order.order == SortOrder.desc)
        docs = [d for d, _ in present] + [d for d, k in keyed if k is None]
    return docs


@dataclass
class _Clause:
    """One simple_query_string clause: a word or quoted phrase, maybe negated or a prefix."""

    tokens: list[str]
    negate: bool
    phrase: bool
    prefix: bool


def _parse_text_query(q: str) -> list[_Clause]:
    """Parse the subset of ES ``simple_query_string`` argilla users type (AND of words/phrases)."""
    clauses = []
    for m in _CLAUSE.finditer(q):
        if m.group(2) is not None:
            tokens, negate, phrase, prefix = _WORD.findall(m.group(2).lower()), bool(m.group(1)), True, False
        else:
            raw = m.group(4).lstrip("+")
            tokens, negate, phrase = _WORD.findall(raw.lower()), bool(m.group(3)), False
            prefix = raw.endswith("*")
        if tokens:
            clauses.append(_Clause(tokens, negate, phrase, prefix))
    return clauses


def _field_text(value: Any) -> str:
    """Searchable text of a field value (chat messages contribute content and role)."""
    if value is None:
        return ""
    if isinstance(value, list):
        return "\n".join(_field_text(v) for v in value)
    if isinstance(value, dict):
        return "\n".join(_field_text(value.get(k)) for k in ("content", "role") if k in value) or str(value)
    return str(value)


def _clause_hits(clause: _Clause, fields_tokens: list[list[str]]) -> int:
    """How often a clause occurs in any field (phrases must be contiguous within one field)."""
    hits = 0
    for tokens in fields_tokens:
        if clause.phrase:
            n = len(clause.tokens)
            hits += sum(tokens[i : i + n] == clause.tokens for i in range(len(tokens) - n + 1))
            continue
        found = 0
        for i, want in enumerate(clause.tokens):
            prefix = clause.prefix and i == len(clause.tokens) - 1
            found_here = sum(t.startswith(want) for t in tokens) if prefix else tokens.count(want)
            if not found_here:
                found = 0
                break
            found += found_here
        hits += found
    return hits


def _text_score(doc: _Doc, clauses: list[_Clause], field_names: list[str]) -> float:
    """0 when the document does not match; otherwise a positive relevance score."""
    fields_tokens = [_WORD.findall(_field_text(doc.fields.get(name)).lower()) for name in field_names]
    score = 0.0
    for clause in clauses:
        hits = _clause_hits(clause, fields_tokens)
        if clause.negate:
            if hits:
                return 0.0
            continue
        if not hits:
            return 0.0
        score += 1.0 + math.log(hits)
    return score or 1.0


async def _searchable_fields(dataset_id: UUID, text: TextQuery) -> list[str]:
    """Field names a text query covers (image fields are not indexed)."""
    async with _session() as db:
        rows = await db.execute(
            select(DatasetField.name, DatasetField.settings).where(DatasetField.dataset_id == dataset_id)
        )
        names = [row.name for row in rows if (row.settings or {}).get("type") != "image"]
    if text.field:
        if text.field not in names:
            raise Exception(f"Field {text.field} not found in dataset {dataset_id}")
        return [text.field]
    return names


def _user_seeded(user_id: Any, record_id: UUID) -> float:
    """Deterministic per-user pseudo-random number in (0, 1], like ES ``random_score`` with a seed."""
    digest = hashlib.sha256(f"{user_id}:{record_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") + 1) / 2**64


def _cosine_score(a: Sequence[float], b: Sequence[float]) -> float:
    """Elasticsearch's cosine ``_score``: (1 + cos) / 2."""
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return (1.0 + (dot / norm if norm else 0.0)) / 2.0


# --------------------------------------------------------------------------------------------------
# The engine.
# --------------------------------------------------------------------------------------------------


@SearchEngine.register(ENGINE_NAME)
class SQLiteSearchEngine(SearchEngine):
    """A search engine that keeps no index: it answers every query from argilla's SQL database."""

    @classmethod
    async def new_instance(cls) -> SQLiteSearchEngine:
        """Create an engine (stateless, so cheap per request)."""
        return cls()

    async def close(self) -> None:
        """Nothing to release."""

    async def ping(self) -> bool:
        """Always reachable: it is the database."""
        return True

    async def info(self) -> dict[str, Any]:
        """Shown by ``GET /api/v1/status``."""
        return {"name": ENGINE_NAME, "version": {"number": "argilla-sqlite"}, "tagline": "no index"}

    # Indexing: the database is the index, so these are no-ops.

    async def create_index(self, dataset: Dataset) -> None:
        """No-op."""

    async def delete_index(self, dataset: Dataset) -> None:
        """No-op."""

    async def configure_metadata_property(self, dataset: Dataset, metadata_property: MetadataProperty) -> None:
        """No-op."""

    async def configure_index_vectors(self, vector_settings: VectorSettings) -> None:
        """No-op."""

    async def index_records(self, dataset: Dataset, records: Iterable[Record]) -> None:
        """No-op."""

    async def partial_record_update(self, record: Record, **update: Any) -> None:
        """No-op."""

    async def delete_records(self, dataset: Dataset, records: Iterable[Record]) -> None:
        """No-op."""

    async def update_record_response(self, response: Response) -> None:
        """No-op."""

    async def delete_record_response(self, response: Response) -> None:
        """No-op."""

    async def update_record_suggestion(self, suggestion: Suggestion) -> None:
        """No-op."""

    async def delete_record_suggestion(self, suggestion: Suggestion) -> None:
        """No-op."""

    # Queries.

    async def get_dataset_progress(self, dataset: Dataset) -> dict[str, int]:
        """Record counts by status (``pending``/``completed``) plus ``total``."""
        if dataset.is_draft:
            return {}
        async with _session() as db:
            rows = await db.execute(
                select(Record.status, func.count()).where(Record.dataset_id == dataset.id).group_by(Record.status)
            )
            counts = {str(status): int(n) for status, n in rows}
        return {"total": sum(counts.values()), **counts}

    async def get_dataset_user_progress(self, dataset: Dataset, user: User) -> dict[str, int]:
        """A user's response counts by status (``submitted``/``discarded``/``draft``) plus ``total``."""
        if dataset.is_draft:
            return {}
        async with _session() as db:
            rows = await db.execute(
                select(Response.status, func.count())
                .join(Record, Response.record_id == Record.id)
                .where(Record.dataset_id == dataset.id, Response.user_id == user.id)
                .group_by(Response.status)
            )
            counts = {str(status): int(n) for status, n in rows}
        return {"total": sum(counts.values()), **counts}

    async def search(
        self,
        dataset: Dataset,
        query: TextQuery | str | None = None,
        filter: Filter | None = None,
        sort: list[Order] | None = None,
        offset: int = 0,
        limit: int = 100,
        user_id: Any = None,
    ) -> SearchResponses:
        """Text query + filters + sort, paginated; ``user_id`` shuffles unsorted results per user."""
        text = TextQuery(q=query) if isinstance(query, str) else query
        scored = await self._candidates(dataset, text, filter, sort)
        if sort:
            docs = _apply_sort([doc for doc, _ in scored], sort)
            items = [SearchResponseItem(record_id=doc.id, score=None) for doc in docs]
        else:
            if user_id is not None:
                scored = [(doc, score * _user_seeded(user_id, doc.id)) for doc, score in scored]
            scored.sort(key=lambda item: item[1], reverse=True)
            items = [SearchResponseItem(record_id=doc.id, score=score) for doc, score in scored]
        return SearchResponses(items=items[offset : offset + limit], total=len(items))

    async def similarity_search(
        self,
        dataset: Dataset,
        vector_settings: VectorSettings,
        value: list[float] | None = None,
        record: Record | None = None,
        query: TextQuery | str | None = None,
        filter: Filter | None = None,
        max_results: int = 100,
        order: SimilarityOrder = SimilarityOrder.most_similar,
        threshold: float | None = None,
    ) -> SearchResponses:
        """Exact k-NN by cosine similarity over the stored vectors, after filters and text query."""
        if bool(value) == bool(record):
            raise ValueError("Must provide either vector value or record to compute the similarity search")
        async with _session() as db:
            rows = await db.execute(
                select(Vector.record_id, Vector.value).where(Vector.vector_settings_id == vector_settings.id)
            )
            vectors = {row.record_id: list(row.value) for row in rows}
        excluded = record.id if record is not None else None
        target = value or (vectors.get(excluded) if excluded is not None else None)
        if not target:
            raise ValueError("Cannot find a vector value to apply with provided info")
        if order == SimilarityOrder.least_similar:
            target = [-x for x in target]
        text = TextQuery(q=query) if isinstance(query, str) else query
        scored = [
            (doc, _cosine_score(target, vectors[doc.id]))
            for doc, _ in await self._candidates(dataset, text, filter, None)
            if doc.id != excluded and doc.id in vectors
        ]
        scored.sort(key=lambda item: item[1], reverse=True)
        top = scored[:max_results]
        items = [
            SearchResponseItem(record_id=doc.id, score=score)
            for doc, score in top
            if threshold is None or score >= threshold
        ]
        return SearchResponses(items=items, total=len(top))

    async def compute_metrics_for(self, metadata_property: MetadataProperty) -> MetadataMetrics:
        """Terms: value count and per-term document counts; numbers: min and max."""
        async with _session() as db:
            rows = await db.execute(select(Record.metadata_).where(Record.dataset_id == metadata_property.dataset_id))
            per_doc = [_flatten((row.metadata_ or {}).get(metadata_property.name)) for row in rows]
        if metadata_property.type == MetadataPropertyType.terms:
            doc_counts: Counter[str] = Counter()
            for values in per_doc:
                doc_counts.update({_term_str(v) for v in values})
            buckets = sorted(doc_counts.items(), key=lambda kv: (-kv[1], kv[0]))
            return TermsMetrics(
                total=sum(len(values) for values in per_doc),
                values=[TermsMetrics.TermCount(term=term, count=count) for term, count in buckets],
            )
        numbers = [v for values in per_doc for v in values if isinstance(v, int | float)]
        if metadata_property.type == MetadataPropertyType.integer:
            ints = [int(v) for v in numbers]
            return IntegerMetadataMetrics(min=min(ints, default=None), max=max(ints, default=None))
        floats = [float(v) for v in numbers]
        return FloatMetadataMetrics(min=min(floats, default=None), max=max(floats, default=None))

    async def _candidates(
        self,
        dataset: Dataset,
        text: TextQuery | None,
        filter: Filter | None,
        sort: Sequence[Order] | None,
    ) -> list[tuple[_Doc, float]]:
        """Documents passing the filter and text query, with their text score, in insertion order."""
        docs = await _load_docs(dataset.id, _needs_for(filter, sort, text is not None))
        if filter is not None:
            docs = [doc for doc in docs if _matches(doc, filter)]
        if text is None:
            return [(doc, 1.0) for doc in docs]
        clauses = _parse_text_query(text.q)
        if not clauses:
            return [(doc, 1.0) for doc in docs]
        names = await _searchable_fields(dataset.id, text)
        scored = [(doc, _text_score(doc, clauses, names)) for doc in docs]
        return [(doc, score) for doc, score in scored if score > 0]


def _term_str(value: Any) -> str:
    """How a keyword field stores a value."""
    return str(value).lower() if isinstance(value, bool) else str(value)


# --------------------------------------------------------------------------------------------------
# Commands.
# --------------------------------------------------------------------------------------------------


def _parse_user(spec: str) -> tuple[str, str, str]:
    """``username:role:api_key`` → its three parts."""
    username, role, api_key = spec.split(":", 2)
    return username, role, api_key


async def _create_users(workspace: str, users: list[tuple[str, str, str]], password: str) -> None:
    """Create the workspace and users (skipping existing ones), all members of the workspace."""
    from argilla_server.cli.database.users.create import _create
    from argilla_server.models import UserRole

    for username, role, api_key in users:
        await _create(
            first_name=username,
            username=username,
            role=UserRole(role),
            password=password,
            api_key=api_key,
            workspace=[workspace],
        )


def bootstrap(args: argparse.Namespace) -> None:
    """Migrate the database to head, then create the workspace and users."""
    from argilla_server.cli.database.migrate import migrate_db

    migrate_db(revision="head")
    asyncio.run(_create_users(args.workspace, [_parse_user(u) for u in args.user], args.password))


def serve(args: argparse.Namespace) -> None:
    """Run the argilla-server app with uvicorn (the engine is registered by importing this module)."""
    import uvicorn
    from argilla_server import app

    uvicorn.run(app, host=args.host, port=args.port, access_log=args.access_log, log_level="info")


def worker(args: argparse.Namespace) -> None:
    """Run one rq worker on argilla's queues (hub imports, webhooks, dataset jobs)."""
    from argilla_server.jobs.queues import DEFAULT_QUEUE, HIGH_QUEUE, REDIS_CONNECTION
    from rq import Worker

    Worker([HIGH_QUEUE, DEFAULT_QUEUE], connection=REDIS_CONNECTION).work(with_scheduler=False)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("bootstrap", help="migrate the database and create workspace + users")
    p.add_argument("--workspace", default="argilla")
    p.add_argument("--user", action="append", default=[], help="username:role:api_key (repeatable)")
    p.add_argument("--password", default="12345678")
    p.set_defaults(func=bootstrap)
    p = sub.add_parser("serve", help="run the server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6900)
    p.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True)
    p.set_defaults(func=serve)
    p = sub.add_parser("worker", help="run a background-job worker")
    p.set_defaults(func=worker)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    sys.exit(main())
