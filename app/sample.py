"""Synthetic calls of the last days, to try the dashboard (`flask calls sample`).

examples/calls.jsonl is a fixed month (November 2026) that the README's
examples answer from; these calls are dated from today, so the dashboard's
default window (the last 30 days) always shows something. They are drawn
from a generator seeded by today's UTC date: run again the same day, the
command produces the same calls (for the same tenants and options), which
the import skips as duplicates.
"""
import datetime as dt
import json
import random
import uuid
from decimal import Decimal

# model: (USD per input token, USD per output token)
MODELS = {
    "gpt-4o-mini": (Decimal("0.00000015"), Decimal("0.0000006")),
    "gpt-4o": (Decimal("0.0000025"), Decimal("0.00001")),
    "claude-3-5-haiku": (Decimal("0.0000008"), Decimal("0.000004")),
}
OPERATIONS = ("analyze", "summarize", "summarize_aggregate", "assign_codes")
ERROR_CLASSES = ("RateLimitError", "APITimeoutError", "APIConnectionError")
ERROR_SHARE = 0.06


def sample_lines(tenant_ids, days, per_day, today):
    """JSON lines of `per_day` calls per tenant on each of the `days` UTC days before `today`."""
    midnight = dt.datetime.combine(today, dt.time(), dt.timezone.utc)
    for tenant_id in sorted(tenant_ids):
        rng = random.Random(f"{today.isoformat()}/{tenant_id}")
        for day in range(days, 0, -1):
            for _ in range(per_day):
                yield json.dumps(_call(rng, tenant_id, midnight - dt.timedelta(days=day)))


def _call(rng, tenant_id, day_start):
    model = rng.choices(list(MODELS), weights=(6, 2, 3))[0]
    failed = rng.random() < ERROR_SHARE
    input_tokens = 0 if failed else int(rng.lognormvariate(7.8, 0.6))
    output_tokens = 0 if failed else int(rng.lognormvariate(5.8, 0.5))
    price_in, price_out = MODELS[model]
    cost = (input_tokens * price_in + output_tokens * price_out).quantize(Decimal("0.000001"))
    call = {
        "tenant_id": tenant_id,
        "call_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "operation": rng.choice(OPERATIONS),
        "timestamp": (day_start + dt.timedelta(seconds=rng.randrange(86400))).isoformat(),
        "call_duration_ms": 30000 if failed else int(rng.lognormvariate(7.4, 0.5)),
        "model": model,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cost_usd": str(cost),
        "status": "error" if failed else "ok",
    }
    if failed:
        call["error_class"] = rng.choice(ERROR_CLASSES)
    return call
