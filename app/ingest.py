"""The write path for call records: validate everything, then store in bulk.

`flask calls import` (`import_jsonl`) and `POST /v1/usage/calls`
(`ingest_batch`) both validate with `CallRecordSchema`, refuse timestamps
outside the accepted range (`timestamp_range`), resolve tenants here, and
end in `UsageRepository.add_calls`: one transaction per call, bulk
inserts, and duplicates (same tenant and call_id) skipped by the database's
unique index. Nothing is written unless every record is valid. A POSTed batch
is one transaction; an import is one per IMPORT_TRANSACTION_ROWS records.
"""
import tempfile
import time
from dataclasses import dataclass

from marshmallow import ValidationError
from peewee import SqliteDatabase, chunked

from . import accounts
from .db import database
from .records import CallRecordSchema, parse_json, to_row
from .timestamp_range import accepted_range

MAX_REPORTED_ERRORS = 100

# Records per import transaction. SQLite has one write lock for the whole
# database, held by each transaction from its first INSERT to COMMIT; 2000
# rows hold it for 0.15-0.27 s without rollups (measured during a
# 130,000-row import, 2 cores, into an empty and into a 1M-row database),
# about 0.6 s with them when the rows spread over many hours and tenants,
# so a POSTed batch waits that long, not for the whole file. The price:
# SQLite runs the inserts at ~8,500 rows/s in 2000-row transactions against
# ~14,500 in one (each commit writes out the index pages it touched), some
# 6 s more per 130,000 rows.
IMPORT_TRANSACTION_ROWS = 2000
# SQLite: the lock is left free at least this long between two chunks.
# Waiting writers' busy handlers poll at least every 100 ms, so they get
# their turn then; the next chunk is validated and built in ~50 ms since
# the validation fast path, too short for that on its own (a POST then
# waited past a 2 s busy timeout, found by tests/test_lock_waits.py).
WRITERS_TURN_SECONDS = 0.1


class ImportRejected(Exception):
    """Some lines are invalid; `errors` is [(line number, reason)], `count` all of them."""

    def __init__(self, errors, count):
        super().__init__(f"{count} invalid line(s)")
        self.errors = errors
        self.count = count


def describe(messages):
    """marshmallow's error dict as one line: 'field: reason; field: reason'."""
    if isinstance(messages, dict):
        return "; ".join(
            f"{field}: {describe(reasons)}" if field != "_schema" else describe(reasons)
            for field, reasons in messages.items()
        )
    if isinstance(messages, list):
        return " ".join(describe(m) for m in messages)
    return str(messages)


class _TenantCheck:
    """Remembers which tenant ids exist: one query per distinct id."""

    def __init__(self):
        self.known = {}

    def __call__(self, tenant_id):
        if tenant_id not in self.known:
            self.known[tenant_id] = bool(accounts.existing_tenant_ids([tenant_id]))
        return self.known[tenant_id]


def _load_line(schema, line, tenant_exists, accepted):
    """The validated record of one JSON line; ValueError with the reason if invalid."""
    try:
        raw = parse_json(line.rstrip("\r\n"))  # without it, a cut-off line's error is at column 1 of "line 2"
    except ValueError as error:
        raise ValueError(f"not valid JSON ({error})") from None
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    try:
        record = schema.load(raw)
    except ValidationError as error:
        raise ValueError(describe(error.messages)) from None
    if accepted.refuses(record["timestamp"]):
        raise ValueError(f"timestamp: {accepted.reason()}")
    if "tenant_id" not in record:
        raise ValueError("tenant_id: Missing data for required field.")
    if not tenant_exists(record["tenant_id"]):
        raise ValueError(f"tenant_id: Unknown tenant {record['tenant_id']!r}.")
    return record


@dataclass
class ImportProgress:
    """Records committed so far: still true when an import stops half-way."""

    created: int = 0
    duplicates: int = 0


def import_jsonl(lines, repository, progress=None):
    """Import JSON Lines call records; return (created, duplicates).

    Two passes over a spooled copy of the input keep memory bounded: the first
    validates every line (raising ImportRejected if any is bad, before anything
    is stored), the second stores the records in transactions of
    IMPORT_TRANSACTION_ROWS, each one's rows built before it begins, so that no
    transaction holds SQLite's write lock for long. Blank lines are skipped.
    Call it outside any transaction, or the chunks join that one.

    A crash or an interruption during the second pass leaves the transactions
    committed so far (counted in `progress`, if given). Running the same
    import again completes it: the records already stored are duplicates
    (same tenant and call_id), which are skipped and counted as such.
    """
    schema = CallRecordSchema()
    tenant_exists = _TenantCheck()
    accepted = accepted_range()
    progress = ImportProgress() if progress is None else progress
    errors, count = [], 0
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        for number, line in enumerate(lines, 1):
            spool.write(line if line.endswith("\n") else line + "\n")
            if not line.strip():
                continue
            try:
                _load_line(schema, line, tenant_exists, accepted)
            except ValueError as error:
                count += 1
                if len(errors) < MAX_REPORTED_ERRORS:
                    errors.append((number, str(error)))
        if count:
            raise ImportRejected(errors, count)
        spool.seek(0)
        records = (schema.load(parse_json(line.rstrip("\r\n"))) for line in spool if line.strip())
        rows = (to_row(record, record["tenant_id"]) for record in records)
        committed = None
        for chunk in chunked(rows, IMPORT_TRANSACTION_ROWS):  # a list: built before the lock
            if committed is not None and isinstance(database.obj, SqliteDatabase):
                time.sleep(max(0.0, WRITERS_TURN_SECONDS - (time.monotonic() - committed)))
            added = repository.add_calls(chunk)
            committed = time.monotonic()
            progress.created += added.created
            progress.duplicates += added.duplicates
    return progress.created, progress.duplicates


class CrossTenantWrite(Exception):
    """A tenant key sent a record for another tenant."""


class BatchRejected(Exception):
    """Records failed timestamp or tenant checks; `errors` is {index: {field: [reason]}}."""

    def __init__(self, errors):
        super().__init__("invalid records")
        self.errors = errors


def ingest_batch(records, api_key, repository):
    """Store validated records sent with `api_key`; return what the repository `Added`.

    A tenant key writes for its own tenant: `tenant_id` may be left out, and a
    different one is refused (CrossTenantWrite). A superuser key writes for any
    existing tenant and must name it on every record (BatchRejected otherwise).
    Every timestamp must lie in the accepted range (BatchRejected otherwise).
    """
    accepted = accepted_range()
    errors = {index: {"timestamp": [accepted.reason()]}
              for index, record in enumerate(records) if accepted.refuses(record["timestamp"])}
    if api_key.is_superuser:
        named = {r["tenant_id"] for r in records if "tenant_id" in r}
        known = accounts.existing_tenant_ids(named)
        for index, record in enumerate(records):
            if "tenant_id" not in record:
                errors.setdefault(index, {})["tenant_id"] = ["Required with a superuser key."]
            elif record["tenant_id"] not in known:
                errors.setdefault(index, {})["tenant_id"] = [f"Unknown tenant {record['tenant_id']!r}."]
    if errors:
        raise BatchRejected(errors)
    # The key's tenant read once: a model's field costs a lookup each time (1 ms a 1000 records).
    own = api_key.tenant_id
    if not api_key.is_superuser and any(r.get("tenant_id", own) != own for r in records):
        raise CrossTenantWrite(f"This key writes only for tenant {own!r}.")
    # Past the checks, a record's tenant is the one it names, else the key's.
    return repository.add_calls([to_row(r, r.get("tenant_id", own)) for r in records])
