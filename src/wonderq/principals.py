"""Who may do what: the principals of the auth file (TOML), their hashed tokens and SQS keys, and their
permissions per queue-name pattern.

Reads the file once, at start-up, and otherwise does no I/O. A principal's permissions never imply one another;
docs/security.md lists what each one allows on every route.

    [[principals]]
    name = "orders"
    token_hashes = ["sha256:3f9a1c2b:5e88..."]    # from `wonderq token orders`; the token itself is not kept
    sqs_access_key_id = "AKIAORDERS"             # optional: the SQS endpoint's SigV4 key of this principal
    sqs_secret_access_key = "..."                # kept as given: SigV4 needs the secret itself

    [principals.permissions]
    "orders" = ["send", "receive"]
    "orders-*" = ["admin"]
    "*" = ["monitor"]
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

TOKEN_PREFIX = "wq"  # a token is "wq_<key id>_<secret>": the key id finds the principal, the secret proves it
KEY_ID = re.compile(r"[0-9a-f]{8}")
TOKEN = re.compile(r"wq_([0-9a-f]{8})_([A-Za-z0-9_-]{43})")  # 32 random bytes, base64url without padding
TOKEN_HASH = re.compile(r"sha256:([0-9a-f]{8}):([0-9a-f]{64})")
NAME = re.compile(r"[A-Za-z0-9_.@:-]{1,64}")
PATTERN = re.compile(r"[A-Za-z0-9_.:*?-]{1,120}")  # a queue name with * (any run) and ? (one character)
ACCESS_KEY_ID = re.compile(r"[A-Za-z0-9]{1,128}")
SECRET_KEY = re.compile(r"[^\s]{1,128}")
PRINCIPAL_KEYS = {"name", "token_hashes", "sqs_access_key_id", "sqs_secret_access_key", "permissions"}


class Permission(StrEnum):
    SEND = "send"  # send messages (single, batch, streamed); a send may create its queue
    RECEIVE = "receive"  # receive, ack, change visibility, stream, peek (it shows bodies, as a receive does)
    ADMIN = "admin"  # create, update, delete, purge, redrive, delete one message
    MONITOR = "monitor"  # the dashboard, queue stats and lists, the event stream, /metrics


ALL = frozenset(Permission)


class PrincipalsError(Exception):
    """The auth file cannot be used; the message says where and why. The server does not start."""


@dataclass(frozen=True, slots=True)
class Principal:
    """A client the operator named, with what it may do: (queue-name pattern, permissions) pairs."""

    name: str
    grants: tuple[tuple[str, frozenset[Permission]], ...]

    def allows(self, permission: Permission, queue: str) -> bool:
        """Whether some pattern matching `queue` grants `permission`."""
        return any(permission in given and fnmatchcase(queue, pattern) for pattern, given in self.grants)

    def allows_somewhere(self, permission: Permission) -> bool:
        """Whether some pattern grants `permission` (on at least one queue name)."""
        return any(permission in given for _, given in self.grants)

    def allows_everywhere(self, permission: Permission) -> bool:
        """Whether `permission` is granted on every queue name (a pattern of only `*`)."""
        return any(permission in given and pattern.strip("*") == "" for pattern, given in self.grants)


EVERYONE = Principal("anonymous", (("*", ALL),))
"""Who a request is when auth is off: allowed everything (only on a loopback bind, or with --insecure)."""


@dataclass(frozen=True, slots=True)
class SqsKey:
    secret: str
    principal: Principal


class Principals:
    """Every principal of one auth file, found by token or by SQS access key id."""

    def __init__(self, principals: Iterable[tuple[Principal, Iterable[str], SqsKey | None, str | None]]) -> None:
        self._by_name: dict[str, Principal] = {}
        self._tokens: dict[str, tuple[bytes, Principal]] = {}  # key id -> (sha256 of the token, principal)
        self._sqs: dict[str, SqsKey] = {}  # access key id -> secret and principal
        for principal, hashes, sqs_key, access_key_id in principals:
            if principal.name in self._by_name:
                raise PrincipalsError(f"principal {principal.name!r} is defined twice")
            self._by_name[principal.name] = principal
            for token_hash in hashes:
                key_id, digest = parse_token_hash(token_hash)
                if key_id in self._tokens:
                    raise PrincipalsError(f"token key id {key_id} is used twice (principal {principal.name!r})")
                self._tokens[key_id] = (digest, principal)
            if sqs_key is not None and access_key_id is not None:
                if access_key_id in self._sqs:
                    raise PrincipalsError(f"SQS access key id {access_key_id} is used twice")
                self._sqs[access_key_id] = sqs_key

    def __len__(self) -> int:
        return len(self._by_name)

    def named(self, name: str) -> Principal | None:
        return self._by_name.get(name)

    def by_token(self, token: str) -> Principal | None:
        """The principal whose token this is, or None. The hash is compared in constant time; the key id in the
        token only picks which hash to compare with."""
        match = TOKEN.fullmatch(token)
        if match is None:
            return None
        found = self._tokens.get(match.group(1))
        if found is None:
            return None
        digest, principal = found
        return principal if hmac.compare_digest(hash_token(token), digest) else None

    def by_sqs_key(self, access_key_id: str) -> SqsKey | None:
        """The secret and principal of an SQS access key id, or None."""
        return self._sqs.get(access_key_id)

    @classmethod
    def from_access_keys(cls, keys: Mapping[str, str]) -> Principals:
        """SQS_ACCESS_KEYS as principals: each key may do everything, over the SQS endpoint only."""
        entries = []
        for key, secret in keys.items():
            principal = Principal(f"sqs:{key}", (("*", ALL),))
            entries.append((principal, (), SqsKey(secret, principal), key))
        return cls(entries)


def hash_token(token: str) -> bytes:
    """The stored form of a token's secret part. A token is 256 random bits, so a fast hash is enough: no one
    can try 2**255 tokens, and a slow hash would be paid by every request."""
    return hashlib.sha256(token.encode("ascii")).digest()


def parse_token_hash(text: str) -> tuple[str, bytes]:
    match = TOKEN_HASH.fullmatch(text)
    if match is None:
        raise PrincipalsError(f"token hash {text[:80]!r} is not of the form sha256:<8 hex digits>:<64 hex digits>")
    return match.group(1), bytes.fromhex(match.group(2))


def new_token() -> tuple[str, str]:
    """A fresh token and the hash to put in the auth file: (token, "sha256:<key id>:<hex>")."""
    key_id = secrets.token_hex(4)
    token = f"{TOKEN_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    return token, f"sha256:{key_id}:{hash_token(token).hex()}"


def load_principals(path: Path) -> Principals:
    """The principals of the auth file at `path`. Raises PrincipalsError naming the file and the problem."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise PrincipalsError(f"{path}: cannot read the auth file: {error.strerror or error}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise PrincipalsError(f"{path}: not a valid TOML file: {error}") from None
    try:
        return parse_principals(document)
    except PrincipalsError as error:
        raise PrincipalsError(f"{path}: {error}") from None


def parse_principals(document: Mapping[str, Any]) -> Principals:
    unknown = set(document) - {"principals"}
    if unknown:
        raise PrincipalsError(f"unknown top-level key {sorted(unknown)[0]!r} (only [[principals]] tables)")
    entries = document.get("principals", [])
    if not isinstance(entries, list) or not entries:
        raise PrincipalsError("the auth file defines no principals: add a [[principals]] table")
    return Principals(_principal(index, entry) for index, entry in enumerate(entries))


def _principal(index: int, entry: Any) -> tuple[Principal, list[str], SqsKey | None, str | None]:
    where = f"principal {index + 1}"
    if not isinstance(entry, dict):
        raise PrincipalsError(f"{where}: must be a table")
    unknown = set(entry) - PRINCIPAL_KEYS
    if unknown:
        raise PrincipalsError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    name = entry.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise PrincipalsError(f"{where}: name must be 1 to 64 of A-Z a-z 0-9 _ . @ : -")
    where = f"principal {name!r}"
    hashes = entry.get("token_hashes", [])
    if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
        raise PrincipalsError(f"{where}: token_hashes must be a list of strings")
    for token_hash in hashes:
        try:
            parse_token_hash(token_hash)
        except PrincipalsError as error:
            raise PrincipalsError(f"{where}: {error}") from None
    access_key_id = entry.get("sqs_access_key_id")
    secret = entry.get("sqs_secret_access_key")
    if (access_key_id is None) != (secret is None):
        raise PrincipalsError(f"{where}: sqs_access_key_id and sqs_secret_access_key go together")
    if access_key_id is not None and not (isinstance(access_key_id, str) and ACCESS_KEY_ID.fullmatch(access_key_id)):
        raise PrincipalsError(f"{where}: sqs_access_key_id must be 1 to 128 letters and digits")
    if secret is not None and not (isinstance(secret, str) and SECRET_KEY.fullmatch(secret)):
        raise PrincipalsError(f"{where}: sqs_secret_access_key must be 1 to 128 characters without spaces")
    if not hashes and access_key_id is None:
        raise PrincipalsError(f"{where}: give token_hashes, an SQS key, or both: it has no way to sign in")
    permissions = entry.get("permissions", {})
    if not isinstance(permissions, dict) or not permissions:
        raise PrincipalsError(f"{where}: permissions must be a table of queue-name pattern = [permissions]")
    grants = []
    for pattern, given in permissions.items():
        if not PATTERN.fullmatch(pattern):
            raise PrincipalsError(f"{where}: {pattern[:80]!r} is not a queue-name pattern (names, * and ?)")
        if not isinstance(given, list) or not given:
            raise PrincipalsError(f"{where}: permissions of {pattern!r} must be a non-empty list")
        chosen = set()
        for item in given:
            try:
                chosen.add(Permission(item))
            except ValueError:
                raise PrincipalsError(
                    f"{where}: {item!r} is not a permission (send, receive, admin, monitor)"
                ) from None
        grants.append((pattern, frozenset(chosen)))
    principal = Principal(name, tuple(grants))
    sqs_key = SqsKey(secret, principal) if isinstance(secret, str) else None
    return principal, hashes, sqs_key, access_key_id
