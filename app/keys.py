"""API-key strings: their format, generation and verification.

A key reads `usk_<key_id>_<secret>`. The `key_id` is public and indexed, so a
presented key is found with one primary-key lookup; only the SHA-256 of the
secret is stored, and it is compared in constant time. The fixed `usk_`
prefix lets secret scanners recognise a leaked key.
"""
import hashlib
import hmac
import re
import secrets

PREFIX = "usk"
KEY_ID_PATTERN = r"^[0-9a-f]{16}$"
KEY_PATTERN = re.compile(r"^usk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_key():
    """Return (key_id, secret, key_string). The secret carries 256 bits."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return key_id, secret, f"{PREFIX}_{key_id}_{secret}"


def split_key(key: str):
    """Return (key_id, secret) of a well-formed key string, else None."""
    match = KEY_PATTERN.match(key or "")
    return match.groups() if match else None


def secret_matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(secret_digest(secret), stored_digest)
