"""Synthetic call records for tests, and a way to store them."""
import datetime as dt
import json
import random
import uuid
from decimal import Decimal

from flask import current_app

from app.records import CallRecordSchema, to_row

UTC = dt.timezone.utc
OPERATIONS = ["analyze", "summarize", "summarize_aggregate", "assign_codes"]
MODELS = ["gpt-4o-mini", "gpt-4o", "claude-haiku"]
ERROR_CLASSES = ["RateLimitError", "APITimeoutError"]


def record(tenant_id, timestamp, operation="analyze", status="ok", cost="0.1",
           duration=100, input_tokens=10, output_tokens=5, **extra):
    rec = {
        "tenant_id": tenant_id,
        "call_id": str(uuid.uuid4()),
        "operation": operation,
        "timestamp": timestamp,
        "call_duration_ms": duration,
        "model": "gpt-4o-mini",
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cost_usd": Decimal(cost),
        "status": status,
    }
    if status == "error":
        rec["error_class"] = "RateLimitError"
    rec.update(extra)
    return rec


def random_records(rng, tenants, count, start, end):
    """`count` records spread over [start, end); ~15% errors; costs with 6 decimals."""
    span = int((end - start).total_seconds())
    records = []
    for _ in range(count):
        status = "error" if rng.random() < 0.15 else "ok"
        extra = {"error_class": rng.choice(ERROR_CLASSES)} if status == "error" else {}
        records.append(record(
            rng.choice(tenants),
            start + dt.timedelta(seconds=rng.randrange(span)),
            operation=rng.choice(OPERATIONS),
            model=rng.choice(MODELS),
            status=status,
            cost=str(Decimal(rng.randrange(0, 2_000_000)) / 1_000_000),
            duration=rng.randrange(0, 20_000),
            input_tokens=rng.randrange(0, 8_000),
            output_tokens=rng.randrange(0, 2_000),
            **extra,
        ))
    return records


def to_json(rec):
    """The record as the service receives it (ISO timestamps, decimal strings)."""
    out = dict(rec)
    out["timestamp"] = rec["timestamp"].isoformat()
    out["cost_usd"] = str(rec["cost_usd"])
    return out


def store(app, records):
    """Store records through the shared validation schema and repository."""
    schema = CallRecordSchema()
    with app.app_context():
        rows = [to_row(schema.load(to_json(r)), r["tenant_id"]) for r in records]
        return current_app.extensions["usage_repository"].add_calls(rows)


def jsonl(records):
    return "".join(json.dumps(to_json(r)) + "\n" for r in records)


def seeded(seed):
    return random.Random(seed)
