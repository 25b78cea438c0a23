"""Registered clients and users, kept as database records (kinds `client` and `user`).

Client types (SMART App Launch 2.2 `client-authentication` and `backend-services`):

* `public` — a browser or native app: no secret, PKCE only;
* `confidential-symmetric` — a server-side app with a client secret (HTTP Basic or form);
* `confidential-asymmetric` — authenticates with a `private_key_jwt` assertion signed by a key
  of its registered JWKS (inline) or JWKS URL;
* `backend` — `client_credentials` only, with a `private_key_jwt` assertion (system scopes).

Creating EHR launch contexts (`POST /auth/launch`) is a registration attribute, not a scope:
only a client registered with `launch_issuer` (`fhir-server clients add --launch-issuer`) may.

Secrets and passwords are stored only as Argon2id hashes (argon2-cffi).
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from fhir_server.model import RecordStore
from resources.fhir_dates import now_us

ClientType = Literal["public", "confidential-symmetric", "confidential-asymmetric", "backend"]
CLIENT_TYPES: tuple[ClientType, ...] = (
    "public",
    "confidential-symmetric",
    "confidential-asymmetric",
    "backend",
)
_HASHER = PasswordHasher()
MAX_FAILURES = 5
LOCK_SECONDS = 900


class LoginLocked(Exception):
    """Too many failed sign-ins for this username: locked until the window lapses."""


@cache
def _absent_user_hash() -> str:
    """A hash to check passwords of unknown usernames against, so that they take as long as
    known ones (no username enumeration by timing)."""
    return _HASHER.hash(secrets.token_urlsafe(16))


def hash_secret(secret: str) -> str:
    """An Argon2id hash of a password or client secret."""
    return _HASHER.hash(secret)


def verify_secret(hashed: str, secret: str) -> bool:
    """Whether `secret` matches `hashed` (constant-time inside argon2)."""
    try:
        return _HASHER.verify(hashed, secret)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(slots=True)
class Client:
    """A registered client.

    Attributes:
        client_id: its id.
        type: one of CLIENT_TYPES.
        name: shown on the consent page.
        redirect_uris: exact-match redirect URIs (none for `backend`).
        scope: the scope ceiling: what it may ever be granted (space-separated).
        origins: browser origins allowed to call the token endpoint (CORS).
        secret_hash: Argon2 hash of the secret (`confidential-symmetric`).
        jwks: an inline JWK Set of its public keys, or None.
        jwks_uri: where its JWK Set is published, or None.
        launch_url: the app's launch URL (for `fhir-server launch`), or None.
        launch_issuer: whether its `system/` tokens may create EHR launch contexts at
            `POST /auth/launch` (the EHR's backend client); records stored before this
            attribute existed read as False.
    """

    client_id: str
    type: ClientType
    name: str = ""
    redirect_uris: list[str] = field(default_factory=list)
    scope: str = ""
    origins: list[str] = field(default_factory=list)
    secret_hash: str | None = None
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    launch_url: str | None = None
    launch_issuer: bool = False

    @property
    def asymmetric(self) -> bool:
        """Whether it authenticates with `private_key_jwt`."""
        return self.type in ("confidential-asymmetric", "backend")

    def to_dict(self) -> dict[str, Any]:
        """The stored form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Client:
        """Read the stored form."""
        return cls(**data)


@dataclass(slots=True)
class User:
    """A user who logs in at `/auth/authorize`.

    Attributes:
        username: the login name.
        password_hash: Argon2id hash.
        fhir_user: the user's FHIR resource (`Practitioner/1`, `Patient/2`, ...).
        name: display name.
    """

    username: str
    password_hash: str
    fhir_user: str
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The stored form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> User:
        """Read the stored form."""
        return cls(**data)


class Registry:
    """Clients and users in a RecordStore."""

    def __init__(self, records: RecordStore) -> None:
        self.records = records

    async def client(self, client_id: str) -> Client | None:
        """The registered client, or None."""
        doc = await self.records.get_record("client", client_id)
        return Client.from_dict(doc) if doc else None

    async def save_client(self, client: Client) -> None:
        """Register or replace a client."""
        await self.records.put_record("client", client.client_id, client.to_dict())

    async def clients(self) -> list[Client]:
        """Every registered client, by id."""
        return [Client.from_dict(doc) for _, doc in await self.records.list_records("client")]

    async def delete_client(self, client_id: str) -> bool:
        """Remove a client; True if it existed."""
        return await self.records.delete_record("client", client_id)

    async def user(self, username: str) -> User | None:
        """The user, or None."""
        doc = await self.records.get_record("user", username)
        return User.from_dict(doc) if doc else None

    async def save_user(self, user: User) -> None:
        """Add or replace a user."""
        await self.records.put_record("user", user.username, user.to_dict())

    async def sign_in(self, username: str, password: str) -> User | None:
        """The user if `password` is theirs, else None (the failure is counted).

        After MAX_FAILURES failures within LOCK_SECONDS of each other the username is
        locked for the rest of that window, whatever password is sent (login throttling).

        Raises:
            LoginLocked: the username is locked.
        """
        failures = await self.records.get_record("login-failures", username) or {"count": 0}
        if failures["count"] >= MAX_FAILURES:
            raise LoginLocked(username)
        user = await self.user(username)
        hashed = user.password_hash if user is not None else _absent_user_hash()
        if not verify_secret(hashed, password) or user is None:
            failures["count"] += 1
            expires = now_us() + LOCK_SECONDS * 1_000_000
            await self.records.put_record("login-failures", username, failures, expires)
            return None
        await self.records.delete_record("login-failures", username)
        return user

    async def users(self) -> list[User]:
        """Every user, by username."""
        return [User.from_dict(doc) for _, doc in await self.records.list_records("user")]


def new_secret() -> str:
    """A fresh client secret (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)
