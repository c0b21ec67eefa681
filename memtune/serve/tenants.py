"""Tenants: API tokens bound to a user-id prefix, read from the file `tenants_file=` names (conf/serve.yaml).

    # tenants.yaml (YAML or JSON): a list, or {"tenants": [...]}
    - name: acme
      token_sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8   # sha256 of the token
      user_id_prefix: "acme:"
    - name: globex
      token_sha256: ...
      user_id_prefix: "globex:"

A request with a tenant's token may touch only the scopes whose user_id starts with its prefix (serve/tenant_guard.py
says how each route enforces it). The file holds only the sha256 of each token (`printf %s "$TOKEN" | sha256sum`),
never the token, so reading the file does not let anyone in. Rules checked at start-up, each failure one line
naming the entry and the fix: every entry has a unique name, a 64-hex token_sha256 used once, and a non-empty
user_id_prefix without control characters; no prefix may start another (with "acme" and "acme2", acme's token
would reach every "acme2..." user: end prefixes with a separator such as ":").

The single-token mode stays: without tenants_file, MEMTUNE_API_TOKEN is the one token, with no prefix. With
tenants_file, MEMTUNE_API_TOKEN (if set) is the operator's token: no prefix, and the only one that may reset.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import yaml

TENANT_KEY = "memtune.tenant"  # where the auth middleware puts the caller's Tenant in the ASGI scope (None: operator)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_FIELDS = ("name", "token_sha256", "user_id_prefix")


@dataclass(frozen=True)
class Tenant:
    name: str
    token_sha256: str
    user_id_prefix: str

    def owns(self, user_id: str) -> bool:
        return bool(user_id) and user_id.startswith(self.user_id_prefix)


class TenantsError(ValueError):
    """The tenants file cannot be used; the message names the entry and the fix."""


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load_tenants(path: str | Path, operator_token: str | None = None) -> list[Tenant]:
    """The tenants of the file at `path`, checked (see the module docstring)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise TenantsError(f"tenants_file {str(path)!r} cannot be read ({err.strerror or err})") from None
    try:
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        raise TenantsError(
            f"tenants_file {str(path)!r} is not valid {path.suffix.lstrip('.') or 'YAML'}: {err}"
        ) from None
    entries = doc.get("tenants") if isinstance(doc, dict) else doc
    if not isinstance(entries, list) or not entries:
        raise TenantsError(
            f"tenants_file {str(path)!r} must be a non-empty list of {{name, token_sha256, user_id_prefix}} "
            "(or {tenants: [...]})"
        )
    tenants = [_tenant(entry, i, path) for i, entry in enumerate(entries)]
    _check_unique(tenants, path, operator_token)
    return tenants


def _tenant(entry, i: int, path: Path) -> Tenant:
    where = f"tenants_file {str(path)!r}, entry {i}"
    if not isinstance(entry, dict):
        raise TenantsError(f"{where}: must be a mapping with {', '.join(_FIELDS)}, got {type(entry).__name__}")
    unknown = sorted(set(entry) - set(_FIELDS))
    missing = [f for f in _FIELDS if not isinstance(entry.get(f), str) or not entry.get(f)]
    if unknown:
        raise TenantsError(f"{where}: unknown field(s) {unknown}; accepted: {list(_FIELDS)} (never a plain token)")
    if missing:
        raise TenantsError(f"{where}: {missing} must be non-empty strings")
    digest = entry["token_sha256"].strip().lower()
    if not _HEX64.match(digest):
        raise TenantsError(
            f"{where} ({entry['name']!r}): token_sha256 must be the 64 hex digits of sha256(token), e.g. "
            '`printf %s "$TOKEN" | sha256sum`'
        )
    prefix = entry["user_id_prefix"]
    bad = next((ch for ch in prefix if unicodedata.category(ch) == "Cc"), None)
    if bad is not None or len(prefix) > 256 or prefix != prefix.strip():
        raise TenantsError(
            f"{where} ({entry['name']!r}): user_id_prefix {prefix!r} must be at most 256 characters, without "
            "control characters or surrounding whitespace"
        )
    return Tenant(entry["name"], digest, prefix)


def _check_unique(tenants: list[Tenant], path: Path, operator_token: str | None) -> None:
    where = f"tenants_file {str(path)!r}"
    seen_names, seen_hashes = set(), set()
    for t in tenants:
        if t.name in seen_names:
            raise TenantsError(f"{where}: tenant name {t.name!r} is used twice")
        if t.token_sha256 in seen_hashes:
            raise TenantsError(f"{where}: tenant {t.name!r} has the same token as another tenant: give each its own")
        seen_names.add(t.name)
        seen_hashes.add(t.token_sha256)
    if operator_token and token_sha256(operator_token) in seen_hashes:
        raise TenantsError(f"{where}: a tenant's token is the operator's MEMTUNE_API_TOKEN: give the tenant its own")
    for a in tenants:
        for b in tenants:
            if a is not b and b.user_id_prefix.startswith(a.user_id_prefix):
                raise TenantsError(
                    f"{where}: tenant {a.name!r} has user_id_prefix {a.user_id_prefix!r}, which tenant {b.name!r}'s "
                    f"{b.user_id_prefix!r} starts with, so {a.name!r} would reach {b.name!r}'s users: make the "
                    'prefixes distinct, e.g. end each with a separator ("acme:")'
                )


class TokenTable:
    """Bearer token -> who is calling: the operator (single-token mode, or the operator token beside tenants) or
    a Tenant. Compares in constant time per entry."""

    def __init__(self, operator_token: str | None, tenants: list[Tenant] | None = None):
        self._operator = operator_token.encode() if operator_token else None
        self._tenants = list(tenants or [])

    def __bool__(self) -> bool:
        return self._operator is not None or bool(self._tenants)

    def lookup(self, token: bytes) -> tuple[bool, Tenant | None]:
        """(authorized, tenant): tenant None with authorized True is the operator."""
        if self._operator is not None and hmac.compare_digest(token, self._operator):
            return True, None
        digest = hashlib.sha256(token).hexdigest().encode()
        found = None
        for t in self._tenants:  # every entry is compared: the time does not tell which one matched
            if hmac.compare_digest(digest, t.token_sha256.encode()):
                found = t
        return (found is not None), found
