"""The server's signing keys: generated on first start, kept outside the repository, rotated.

Keys are JWKs (RFC 7517) with `kid` = the RFC 7638 thumbprint: an RSA 2048 key signing RS256
access and id tokens, and an EC P-384 key (ES384) published beside it. They live either in a
JSON file (`FHIR_SERVER_SIGNING_KEYS=/path/keys.json`, created with mode 0600 in a 0700
folder; default `./data/signing-keys.json`, which `.gitignore` keeps out of the repository) or
in the database (`FHIR_SERVER_SIGNING_KEYS=database`, records of kind `signing-key`).

Rotation (`fhir-server keys rotate`) adds a new key that signs from then on and marks the old
ones retired; a retired key stays published in `/auth/jwks` (and accepted) until every token it
signed has expired, then it is dropped.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from joserfc.jwk import ECKey, KeySet, RSAKey

from fhir_server.model import RecordStore
from resources.errors import StoreConflict
from resources.fhir_dates import US, now_us

RECORD_KIND = "signing-key"
DATABASE = "database"
SIGNING_ALG = "RS256"


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One key pair.

    Attributes:
        jwk: the private JWK as a dict (with `kid`, `alg`, `use`).
        created: µs UTC.
        retired: µs UTC when a newer key replaced it, or None while it signs.
    """

    jwk: dict[str, Any]
    created: int
    retired: int | None = None

    @property
    def kid(self) -> str:
        """The key id (RFC 7638 thumbprint)."""
        return str(self.jwk["kid"])

    @property
    def alg(self) -> str:
        """The JWS algorithm this key signs with (`RS256` or `ES384`)."""
        return str(self.jwk["alg"])

    def to_dict(self) -> dict[str, Any]:
        """The stored form."""
        return {"jwk": self.jwk, "created": self.created, "retired": self.retired}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SigningKey:
        """Read the stored form."""
        return cls(dict(data["jwk"]), int(data["created"]), data.get("retired"))


def new_key(alg: str = SIGNING_ALG) -> SigningKey:
    """Generate a key pair: RSA 2048 for `RS256`/`RS384`, EC P-384 for `ES384`."""
    key: RSAKey | ECKey
    if alg.startswith("RS"):
        key = RSAKey.generate_key(2048, private=True)
    elif alg == "ES384":
        key = ECKey.generate_key("P-384", private=True)
    else:
        raise ValueError(f"unsupported signing algorithm {alg!r}")
    jwk = key.as_dict(private=True)
    jwk.update(kid=key.thumbprint(), alg=alg, use="sig")
    return SigningKey(jwk, now_us())


class ServerKeys:
    """The current key set.

    Args:
        keys: every stored key, newest last.
        retention_seconds: how long a retired key stays valid (the longest token lifetime).
    """

    def __init__(self, keys: list[SigningKey], retention_seconds: int) -> None:
        self.keys = keys
        self.retention_us = retention_seconds * US
        self._objects = {k.kid: _import(k.jwk) for k in keys}  # parsed once, not per token
        self._verify = KeySet([self._objects[k.kid] for k in self.live()])

    def live(self) -> list[SigningKey]:
        """Keys still signing or still within their retention."""
        now = now_us()
        return [k for k in self.keys if k.retired is None or k.retired + self.retention_us > now]

    def signing(self, alg: str = SIGNING_ALG) -> SigningKey:
        """The newest unretired key for `alg`.

        Raises:
            LookupError: no such key.
        """
        for key in reversed(self.keys):
            if key.retired is None and key.alg == alg:
                return key
        raise LookupError(f"no active {alg} signing key")

    def private_jwk(self, key: SigningKey) -> RSAKey | ECKey:
        """The joserfc key object for signing with `key`."""
        return self._objects[key.kid]

    def verification_set(self) -> KeySet:
        """The public keys tokens may be verified with."""
        return self._verify

    def knows(self, kid: str) -> bool:
        """Whether `kid` names a live key."""
        return any(k.kid == kid for k in self.live())

    def public_jwks(self) -> dict[str, Any]:
        """The JWK Set served at `/auth/jwks` (public members only)."""
        out = []
        for key in self.live():
            public = self._objects[key.kid].as_dict(private=False)
            public.update(kid=key.kid, alg=key.alg, use="sig")
            out.append(public)
        return {"keys": out}


PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})  # RFC 7518 §6


def public_jwk(jwk: dict[str, Any]) -> dict[str, Any]:
    """A JWK without its private members (what a client registers, what may be published)."""
    return {name: value for name, value in jwk.items() if name not in PRIVATE_MEMBERS}


def _import(jwk: dict[str, Any]) -> RSAKey | ECKey:
    if jwk["kty"] == "RSA":
        return RSAKey.import_key(jwk)
    return ECKey.import_key(jwk)


class KeyFile:
    """Keys in a JSON file, created 0600 (its folder 0700) on first use."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    async def load(self) -> list[SigningKey]:
        """The stored keys, or [] if the file does not exist."""
        if not self.path.exists():
            return []
        data = orjson.loads(self.path.read_bytes())
        return [SigningKey.from_dict(k) for k in data.get("keys", [])]

    async def create(self, keys: list[SigningKey]) -> bool:
        """Write the first keys unless another process did first; False if it did.

        The file appears whole or not at all (written aside, then hard-linked into place,
        which fails if the name exists), so workers starting together never read half a
        file and all end up with the winner's keys."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        aside = self.path.with_name(f".{self.path.name}.{os.getpid()}.new")
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(orjson.dumps({"keys": [k.to_dict() for k in keys]}))
            os.link(aside, self.path)
        except FileExistsError:
            return False
        finally:
            aside.unlink(missing_ok=True)
        return True

    async def save(self, keys: list[SigningKey]) -> None:
        """Replace the stored keys (atomically: write aside, then rename)."""
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(
                orjson.dumps({"keys": [k.to_dict() for k in keys]}, option=orjson.OPT_INDENT_2)
            )
        tmp.replace(self.path)


class KeyRecords:
    """Keys as database records (kind `signing-key`, key = kid)."""

    def __init__(self, records: RecordStore) -> None:
        self.records = records

    async def load(self) -> list[SigningKey]:
        """The stored keys, oldest first."""
        keys = [
            SigningKey.from_dict(doc) for _, doc in await self.records.list_records(RECORD_KIND)
        ]
        return sorted(keys, key=lambda k: k.created)

    async def create(self, keys: list[SigningKey]) -> bool:
        """Store the first keys unless another process did first; False if it did."""
        if await self.records.list_records(RECORD_KIND):
            return False
        try:
            for key in keys:
                await self.records.insert_record(RECORD_KIND, key.kid, key.to_dict())
        except StoreConflict:
            return False
        return True

    async def save(self, keys: list[SigningKey]) -> None:
        """Store every key (upsert) and drop the ones no longer listed."""
        kept = {k.kid for k in keys}
        for key in keys:
            await self.records.put_record(RECORD_KIND, key.kid, key.to_dict())
        for kid, _ in await self.records.list_records(RECORD_KIND):
            if kid not in kept:
                await self.records.delete_record(RECORD_KIND, kid)


def key_source(setting: str, records: RecordStore) -> KeyFile | KeyRecords:
    """Where keys live: `database`, or a file path."""
    return KeyRecords(records) if setting == DATABASE else KeyFile(setting)


async def load_keys(source: KeyFile | KeyRecords, retention_seconds: int) -> ServerKeys:
    """The key set, generating the first RS256 and ES384 keys if none are stored."""
    keys = await source.load()
    if not keys:
        first = [new_key("RS256"), new_key("ES384")]
        if not await source.create(first):  # another process won the race: use its keys
            with contextlib.suppress(FileNotFoundError):
                keys = await source.load()
        keys = keys or first
    return ServerKeys(keys, retention_seconds)


async def rotate_keys(source: KeyFile | KeyRecords, retention_seconds: int) -> ServerKeys:
    """Retire every active key, add new RS256 and ES384 keys, drop keys past retention."""
    current = await load_keys(source, retention_seconds)
    now = now_us()
    kept = [
        SigningKey(k.jwk, k.created, k.retired if k.retired is not None else now)
        for k in current.live()
    ]
    keys = [*kept, new_key("RS256"), new_key("ES384")]
    await source.save(keys)
    return ServerKeys(keys, retention_seconds)
