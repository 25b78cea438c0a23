"""Grants, authorization codes, refresh tokens and launch contexts (SMART.md "Rules that matter").

A grant is the server-side record behind every token (kind `grant`): who (client, user,
patient in context), what (scope), and whether it is still active. Access tokens name their
grant, so revoking it stops them at once. Codes and refresh tokens are stored only as SHA-256
hashes:

* a code (kind `code`) is 256 random bits, URL-safe, single use, valid 60 s; using one marks
  it used (kind `code-used`), and a replayed code revokes the grant it issued (RFC 6749 §4.1.2);
* a refresh token (kind `refresh`) rotates on every use; a rotated one is remembered (kind
  `refresh-used`) and presenting it again revokes the grant (OAuth 2.0 Security BCP §4.14);
* a launch context (kind `launch`, EHR launch) is single use.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

from fhir_server.model import RecordStore
from resources.errors import StoreConflict
from resources.fhir_dates import US, now_us


def token_hash(token: str) -> str:
    """The SHA-256 hex digest under which a code or refresh token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """256 random bits, URL-safe (codes, refresh tokens, launch ids, transaction ids)."""
    return secrets.token_urlsafe(32)


@dataclass(slots=True)
class Grant:
    """What one authorization granted.

    Attributes:
        id: the grant id (`grant` claim of its access tokens).
        client_id: the client.
        scope: the granted scope string.
        subject: the user name, or the client id for client credentials.
        patient / encounter: ids in context, or None.
        fhir_user: the user's FHIR reference, or None.
        need_patient_banner / smart_style_url: EHR launch hints.
        active: False once revoked.
        created: µs UTC.
        kind: `authorization_code`, `client_credentials` or `admin` (minted by the CLI).
        expires: µs UTC when the stored grant lapses (set by `Grants.save`), None before.
    """

    id: str
    client_id: str
    scope: str
    subject: str
    patient: str | None = None
    encounter: str | None = None
    fhir_user: str | None = None
    need_patient_banner: bool | None = None
    smart_style_url: str | None = None
    active: bool = True
    created: int = field(default_factory=now_us)
    kind: str = "authorization_code"
    nonce: str | None = None
    expires: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The stored form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Grant:
        """Read the stored form."""
        return cls(**data)


@dataclass(frozen=True, slots=True)
class PendingCode:
    """What an authorization code stands for until it is exchanged."""

    grant: Grant
    redirect_uri: str
    code_challenge: str

    def to_dict(self) -> dict[str, Any]:
        """The stored form."""
        return {
            "grant": self.grant.to_dict(),
            "redirect_uri": self.redirect_uri,
            "code_challenge": self.code_challenge,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PendingCode:
        """Read the stored form."""
        return cls(Grant.from_dict(data["grant"]), data["redirect_uri"], data["code_challenge"])


class Grants:
    """Grant, code, refresh-token and launch records in a RecordStore.

    Args:
        records: where records live (`Repository.records`).
        code_seconds: code lifetime (60).
        refresh_seconds: refresh token lifetime.
    """

    ACTIVE_LIMIT = 10_000
    """Grants remembered active at once (`is_active`); past it the memory starts again."""

    def __init__(self, records: RecordStore, code_seconds: int, refresh_seconds: int) -> None:
        self.records = records
        self.code_seconds = code_seconds
        self.refresh_seconds = refresh_seconds
        self._active: dict[str, tuple[bytes, int]] = {}

    async def save(self, grant: Grant, lifetime: int) -> None:
        """Store (or replace) a grant, kept for `lifetime` seconds (`grant.expires` is set)."""
        grant.expires = now_us() + lifetime * US
        await self.records.put_record("grant", grant.id, grant.to_dict(), grant.expires)

    async def get(self, grant_id: str) -> Grant | None:
        """The grant, active or revoked, or None once it lapsed."""
        doc = await self.records.get_record("grant", grant_id)
        return Grant.from_dict(doc) if doc else None

    def known_active(self, grant_id: str, now: int) -> bool:
        """Whether `is_active` would answer True for the grant at `now` (µs UTC) without
        asking the store: remembered active and nothing committed since (`is_active`). False
        means "ask `is_active`", not "revoked". Every request with a token asks this first."""
        known = self._active.get(grant_id)
        return known is not None and known[1] >= now and known[0] == self.records.change_stamp()

    async def is_active(self, grant_id: str) -> bool:
        """Whether access tokens of this grant are still honoured, as stored now.

        Asked on every request that carries a token. A grant found active is remembered with
        the store's `change_stamp` taken before it was read and the time it lapses
        (`Grant.expires`); while the stamp stays the same nothing was committed since by any
        process (no revocation either), so until then the answer stands without a query. A
        store without stamps (MongoDB), or a grant stored without `expires`, is asked every
        time.
        """
        if self.known_active(grant_id, now_us()):
            return True
        stamp = self.records.change_stamp()
        doc = await self.records.get_record("grant", grant_id)
        active = bool(doc and doc.get("active"))
        expires = doc.get("expires") if doc else None
        if active and stamp is not None and isinstance(expires, int):
            if len(self._active) >= self.ACTIVE_LIMIT:
                self._active.clear()
            self._active[grant_id] = (stamp, expires)
        return active

    async def revoke(self, grant_id: str) -> bool:
        """Mark the grant revoked (its access and refresh tokens stop working at once)."""
        doc = await self.records.get_record("grant", grant_id)
        if not doc or not doc.get("active"):
            return False
        doc["active"] = False
        doc["expires"] = now_us() + self.refresh_seconds * US  # kept to refuse reuse meanwhile
        await self.records.put_record("grant", grant_id, doc, doc["expires"])
        return True

    # -- codes ------------------------------------------------------------------------------

    async def issue_code(self, pending: PendingCode) -> str:
        """A new single-use code for `pending` (valid `code_seconds`)."""
        code = new_token()
        expires = now_us() + self.code_seconds * US
        await self.records.insert_record("code", token_hash(code), pending.to_dict(), expires)
        return code

    async def redeem_code(self, code: str) -> PendingCode | None:
        """Take the code (single use). On a replay, revoke the grant it issued; None then,
        and for unknown or expired codes."""
        digest = token_hash(code)
        doc = await self.records.take_record("code", digest)
        if doc is None:
            used = await self.records.get_record("code-used", digest)
            if used is not None:
                await self.revoke(str(used["grant"]))
            return None
        pending = PendingCode.from_dict(doc)
        await self.records.put_record(
            "code-used", digest, {"grant": pending.grant.id}, now_us() + 3600 * US
        )
        return pending

    # -- refresh tokens ---------------------------------------------------------------------

    async def issue_refresh(self, grant: Grant) -> str:
        """A new refresh token for `grant`."""
        token = new_token()
        expires = now_us() + self.refresh_seconds * US
        await self.records.insert_record("refresh", token_hash(token), {"grant": grant.id}, expires)
        return token

    async def rotate_refresh(self, token: str) -> Grant | None:
        """Use a refresh token once: its active grant, or None. A token used before revokes
        its grant (reuse detection); an unknown or expired one is simply refused."""
        digest = token_hash(token)
        doc = await self.records.take_record("refresh", digest)
        if doc is None:
            used = await self.records.get_record("refresh-used", digest)
            if used is not None:
                await self.revoke(str(used["grant"]))
            return None
        grant_id = str(doc["grant"])
        await self.records.put_record(
            "refresh-used", digest, {"grant": grant_id}, now_us() + self.refresh_seconds * US
        )
        grant = await self.get(grant_id)
        return grant if grant is not None and grant.active else None

    async def refresh_grant(self, token: str) -> Grant | None:
        """The grant of an unused refresh token, without using it (introspection, revocation)."""
        doc = await self.records.get_record("refresh", token_hash(token))
        return await self.get(str(doc["grant"])) if doc else None

    # -- launch contexts --------------------------------------------------------------------

    async def create_launch(self, context: dict[str, Any], lifetime: int) -> str:
        """Store an EHR launch context; returns its opaque `launch` id."""
        launch = new_token()
        await self.records.insert_record("launch", launch, context, now_us() + lifetime * US)
        return launch

    async def take_launch(self, launch: str) -> dict[str, Any] | None:
        """The launch context (single use), or None."""
        return await self.records.take_record("launch", launch)

    # -- pending authorizations -------------------------------------------------------------

    async def save_transaction(self, txn: str, doc: dict[str, Any]) -> None:
        """Keep an authorization in progress (login, patient picker, consent) for 10 min."""
        await self.records.put_record("authz", txn, doc, now_us() + 600 * US)

    async def transaction(self, txn: str) -> dict[str, Any] | None:
        """An authorization in progress, or None."""
        return await self.records.get_record("authz", txn)

    async def end_transaction(self, txn: str) -> dict[str, Any] | None:
        """Take an authorization in progress (single use), or None."""
        return await self.records.take_record("authz", txn)

    # -- client assertion ids ---------------------------------------------------------------

    async def use_jti(self, client_id: str, jti: str, expires: int) -> bool:
        """Record an assertion `jti` until `expires` (s since epoch); False if seen before."""
        try:
            await self.records.insert_record("jti", f"{client_id}/{jti}", {}, expires * US)
        except StoreConflict:
            return False
        return True
