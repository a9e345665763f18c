"""`plainly_valid`, the fast path of CallRecordSchema.load, against marshmallow.

The fast path may send a record on to marshmallow (None) for any reason, but
whenever it answers, marshmallow must accept the same record and load the
very same values: otherwise a batch would be stored that the schema refuses,
or stored differently. Each field is tried with plain, edge and hostile
values, alone and in pairs, on top of a valid record.
"""
import itertools
import random
from decimal import Decimal

import pytest
from marshmallow import Schema, ValidationError

from app.records import MAX_INT, CallRecordSchema, plainly_valid

VALID = {
    "tenant_id": "acme",
    "call_id": "0b4e7d1c-3f5a-4c2e-9a1b-6d8f2e4c7a90",
    "operation": "analyze",
    "timestamp": "2026-11-01T12:00:00Z",
    "call_duration_ms": 1840,
    "model": "gpt-4o-mini",
    "input_tokens": 2100,
    "output_tokens": 310,
    "cost_usd": "0.001234",
    "status": "ok",
}
ABSENT = object()
COUNTS = [0, 1, MAX_INT, MAX_INT + 1, -1, True, False, 1.5, Decimal("1.0"), Decimal("1E+2"),
          Decimal("9" * 5001), "5", None, [], {}]
TEXT = ["gpt-4o", "", "a" * 255, "a" * 256, "nul\x00byte", "lone \ud800 surrogate", "é" * 255,
        "e\u0301", " ", 5, None, True, ["a"]]
VARIANTS = {
    "tenant_id": [ABSENT, "acme", "a" * 64, "a" * 65, "Acme", "acme\n", "-acme", "", None, 5, ["acme"]],
    "call_id": ["0B4E7D1C-3F5A-4C2E-9A1B-6D8F2E4C7A90", "0b4e7d1c3f5a4c2e9a1b6d8f2e4c7a90",
                "{0b4e7d1c-3f5a-4c2e-9a1b-6d8f2e4c7a90}", "urn:uuid:0b4e7d1c-3f5a-4c2e-9a1b-6d8f2e4c7a90",
                "0b4e7d1c-3f5a-4c2e-9a1b-6d8f2e4c7a90\n", "not-a-uuid", "", None, 12, ABSENT],
    "operation": ["summarize_aggregate", "a" * 64, "a" * 65, "analyze\n", "Analyze", "1analyze", "",
                  None, 1, ABSENT],
    "timestamp": ["2026-11-01T12:00:00+02:00", "2026-11-01T12:00:00-05:30", "2026-11-01T12:00:00.123456Z",
                  "2026-11-01T12:00:00.1234567Z", "2026-11-01 12:00:00Z", "2026-11-01T12:00:00",
                  "2026-11-01", "20261101T120000Z", "0001-01-01T00:30:00+01:00",
                  "9999-12-31T23:59:59-01:00", "2026-11-01T12:00:00+24:00", "2026-02-30T12:00:00Z",
                  "", None, 1_700_000_000, ABSENT],
    "call_duration_ms": COUNTS + [ABSENT],
    "input_tokens": COUNTS,
    "output_tokens": COUNTS,
    "model": TEXT + [ABSENT],
    "cost_usd": ["0", "0.000001", "0.0000001", "0.30000000000", "-0", "-0.000001", "1000000",
                 "1000000.000001", "1000000.0000001", "1E+6", "1E+7", "1e-999999999", "NaN", "sNaN",
                 "Infinity", "-Infinity", " 1 ", "1_000", "abc", "", 0, 7, -1, 10**7,
                 Decimal("0.1"), Decimal("1e-7"), Decimal("NaN"), Decimal("9" * 5001), True, 1.5,
                 None, [], ABSENT],
    "status": ["error", "OK", "", None, 1, ABSENT],
    "error_class": [ABSENT, None, "RateLimitError"] + TEXT,
    "extra": [ABSENT, 1, None],
}


def with_values(**values):
    record = dict(VALID)
    for name, value in values.items():
        if value is ABSENT:
            record.pop(name, None)
        else:
            record[name] = value
    return record


def marshmallow_load(raw):
    """What the schema answers without its fast path."""
    try:
        return Schema.load(CallRecordSchema(), raw)
    except ValidationError:
        return None


def assert_never_differs(raw):
    fast = plainly_valid(raw)
    if fast is not None:
        assert fast == marshmallow_load(raw), raw


def test_the_schema_is_the_one_plainly_valid_restates():
    """A new field, validator or hook in CallRecordSchema must be restated in
    plainly_valid (or the fast path would skip it): this test then fails."""
    declared = {name: (type(field).__name__, [type(v).__name__ for v in field.validators],
                       field.required, field.allow_none)
                for name, field in CallRecordSchema._declared_fields.items()}
    assert declared == {
        "tenant_id": ("String", ["WholeMatch"], False, False),
        "call_id": ("UUID", [], True, False),
        "operation": ("String", ["WholeMatch"], True, False),
        "timestamp": ("UtcDateTime", [], True, False),
        "call_duration_ms": ("StrictInteger", ["Range"], True, False),
        "model": ("Text", ["Length"], True, False),
        "input_tokens": ("StrictInteger", ["Range"], True, False),
        "output_tokens": ("StrictInteger", ["Range"], True, False),
        "cost_usd": ("Decimal", ["Range", "function"], True, False),
        "status": ("String", ["OneOf"], True, False),
        "error_class": ("Text", ["Length"], False, True),
    }
    hooks = {name for entries in CallRecordSchema._hooks.values() for name, *_ in entries}
    assert hooks == {"error_class_matches_status"}


def test_a_plain_record_takes_the_fast_path_with_the_schemas_values():
    fast = plainly_valid(VALID)
    assert fast is not None and fast == marshmallow_load(VALID)
    error = with_values(status="error", error_class="RateLimitError", cost_usd=Decimal("0.5"))
    assert plainly_valid(error) == marshmallow_load(error) is not None


@pytest.mark.parametrize("field", sorted(VARIANTS))
def test_one_unusual_value_never_loads_differently(field):
    for value in VARIANTS[field]:
        assert_never_differs(with_values(**{field: value}))


def test_two_unusual_values_never_load_differently():
    for first, second in itertools.combinations(sorted(VARIANTS), 2):
        for a, b in itertools.product(VARIANTS[first], VARIANTS[second]):
            assert_never_differs(with_values(**{first: a, second: b}))


def test_random_records_never_load_differently():
    rng = random.Random(10)
    for _ in range(5000):
        assert_never_differs(with_values(**{field: rng.choice(values)
                                            for field, values in VARIANTS.items() if rng.random() < 0.4}))


@pytest.mark.parametrize("raw", [None, [], "record", 5, [VALID]])
def test_what_is_not_an_object_goes_to_marshmallow(raw):
    assert plainly_valid(raw) is None
    with pytest.raises(ValidationError):
        CallRecordSchema().load(raw)
