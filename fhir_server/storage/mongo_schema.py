"""The MongoDB document schema of the ResourceStore: collections, indexes, document builders.

µs are microseconds since the epoch, UTC.

`resources`: one document per logical resource, holding its current version::

    {_id: "Type/id", type, id, seq: int (store-wide, fixed at first creation),
     version_id: int, last_updated: µs, deleted: bool, method: "POST"|"PUT"|"PATCH"|"DELETE",
     content: bytes | null (BSON binary of the FHIR JSON as given), w: str (the apply() that
     wrote it),
     idx: {string: [{p, n, e}], token: [{p, s, c, t}], date: [{p, lo, hi}],
           reference: [{p, rt, ri, u, is, iv}], number: [{p, v}],
           quantity: [{p, v, s, c, u}], uri: [{p, v}]},
     sort: {<param>: {h: 1, a: ascending value, d: descending value}},
     comp: ["Patient/1", ...]}

    `p` is the search parameter code; the other letters are the `resources.index_values` entry
    fields (`n`orm, `e`xact, `s`ystem, `c`ode, `t`ext, `lo`w, `hi`gh, `r`ef `t`ype, `r`ef
    `i`d, `u`rl, `i`dentifier `s`ystem / `v`alue, `v`alue, `u`nit). Every `idx` list is present
    (maybe empty) and absent values are stored as null. `sort.<param>.h` is a presence flag:
    sorting on it descending puts resources without a value last in either direction, the
    same on MongoDB and mongomock. A deletion marker keeps `seq` and has empty `idx`, `sort`
    and `comp`.

`history`: one document per version::

    {_id: "Type/id/version", type, id, version_id, last_updated: µs, deleted, method,
     content, hseq: int (write order, breaks ties of last_updated), w,
     o: true (an event not numbered yet) | e: int (its event number), `mongo_events.py`}

`counters`: `{_id: "seq", value: int}`, advanced with `$inc` for both `seq` and `hseq`;
`{_id: "event", value: int}` for event numbers.

`locks`: `{_id: key, expires: µs, owner: str}`, one per held `lock()`.

`claims`: one document per claimed key (SCHEDULING.md "Never double-book",
`mongo_claims.py`)::

    {_id: "{scope}#{quantum}", scope: str, quantum: int, owner: str,
     expires: µs | null (null = a booking, held until released), w: str (the apply() that
     last wrote it),
     while an apply() has not finished with it (provisional):
     p: true, prev: <the claims document as it stood before that apply> | null (free),
     fin: {owner, expires} (its state once that apply is committed) | null (released)}

    `scope` is e.g. `Schedule/7` (quantum = minute index, µs // 60_000_000) or `Slot/9`
    (quantum = seat number); `owner` e.g. `Appointment/1`. The unique `_id` is the guarantee:
    two owners can never both insert one key, in any number of processes. A provisional
    document counts as `fin` if the journal head `w` is committed, as held while that head is
    pending and leased, and as `prev` otherwise. Indexes: (scope, quantum) for `claims_in`,
    (owner, scope, quantum) for an owner's set, (prev.owner) for the keys an unfinished
    apply took from an owner, (expires) for the hold sweeper.

`journal`: what each unfinished apply() is doing, so a crashed one can be undone or completed
(`mongo_journal.py`). One head per call, written first::

    {_id: token (= `w` of what the call writes), kind: "head",
     state: "pending" | "committed" | "aborted", lease: µs}

    then one entry per identity the call writes and one per claim owner (never one big
    document, so a large transaction Bundle stays within MongoDB's 16 MB document limit)::

    {_id: "{token}/{Type/id}", kind: "resource", call: token, key: "Type/id",
     before: <the resources document before the call> | null, versions: [int]}
    {_id: "{token}#{owner}", kind: "claims", call: token, owner, ids: [claim _id]}

    `pending` -> `committed` is the commit point (one conditional update while the lease
    runs); `pending` -> `aborted` is taken by whoever finds the lease lapsed (recovery, or a
    call that meets the dead call's provisional claims). The call deletes its entries, then
    its head, when it is done. Indexes: (call) for a call's entries, (kind, lease) for
    recovery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

from fhir_server.storage.base import Claim, ClaimKey, StoredResource, WriteOp
from resources.index_values import (
    DateEntry,
    NumberEntry,
    QuantityEntry,
    ReferenceEntry,
    ResourceIndex,
    StringEntry,
    TokenEntry,
    UriEntry,
)

Doc = dict[str, Any]
IndexKeys = list[tuple[str, int]]
Session = AsyncClientSession | None
"""The transaction an apply runs in, or None (no multi-document transaction: mongomock, a
standalone server)."""

PENDING, COMMITTED, ABORTED = "pending", "committed", "aborted"
"""The states of an apply's journal head."""

IDX_KINDS = ("string", "token", "date", "reference", "number", "quantity", "uri")


def _asc(*fields: str) -> IndexKeys:
    return [(f, ASCENDING) for f in fields]


RESOURCE_INDEXES: list[IndexKeys] = [
    _asc("type", "deleted", "seq"),
    _asc("deleted", "seq"),
    _asc("type", "idx.token.p", "idx.token.c", "idx.token.s"),
    _asc("type", "idx.string.p", "idx.string.n"),
    _asc("type", "idx.date.p", "idx.date.lo", "idx.date.hi"),
    _asc("type", "idx.reference.p", "idx.reference.ri", "idx.reference.rt"),
    _asc("type", "idx.reference.p", "idx.reference.u"),
    _asc("type", "idx.reference.p", "idx.reference.iv"),
    _asc("type", "idx.number.p", "idx.number.v"),
    _asc("type", "idx.quantity.p", "idx.quantity.v"),
    _asc("type", "idx.uri.p", "idx.uri.v"),
    _asc("comp", "type"),
]
"""Multikey compound indexes of `resources` (each on one `idx` array, so never parallel)."""

RESOURCE_UNIQUE_INDEXES: list[IndexKeys] = [_asc("seq")]

HISTORY_INDEXES: list[IndexKeys] = [
    [("type", ASCENDING), ("id", ASCENDING), ("version_id", DESCENDING)],
    [("last_updated", DESCENDING), ("hseq", DESCENDING)],
    [("type", ASCENDING), ("last_updated", DESCENDING), ("hseq", DESCENDING)],
    _asc("o", "hseq"),
    _asc("e"),
]

CLAIM_INDEXES: list[IndexKeys] = [
    _asc("scope", "quantum"),
    _asc("owner", "scope", "quantum"),
    _asc("prev.owner"),
    _asc("expires"),
]
"""Indexes of `claims` (its uniqueness is the `_id`)."""

JOURNAL_INDEXES: list[IndexKeys] = [_asc("call"), _asc("kind", "lease")]
"""Indexes of `journal`."""

PROVISIONAL_FIELDS = ("p", "prev", "fin")
"""The fields that make a `claims` document provisional."""


@dataclass(frozen=True, slots=True)
class Collections:
    """The collections an apply and its recovery write."""

    resources: AsyncCollection[Doc]
    history: AsyncCollection[Doc]
    counters: AsyncCollection[Doc]
    claims: AsyncCollection[Doc]
    journal: AsyncCollection[Doc]


PAGE_PROJECTION: Doc = {"idx": 0, "comp": 0}
"""What reads and searches fetch of a `resources` document (everything but the index)."""


def resource_key(resource_type: str, id: str) -> str:
    """The `_id` of a `resources` document: `Type/id`."""
    return f"{resource_type}/{id}"


def stored_from_doc(doc: Doc) -> StoredResource:
    """The StoredResource of a `resources` or `history` document."""
    content = doc.get("content")
    return StoredResource(
        resource_type=doc["type"],
        id=doc["id"],
        version_id=int(doc["version_id"]),
        last_updated=int(doc["last_updated"]),
        deleted=bool(doc["deleted"]),
        content=bytes(content) if content is not None else None,
        method=doc.get("method", "PUT"),
    )


def resource_doc(op: WriteOp, seq: int, token: str) -> Doc:
    """The `resources` document for the version `op` writes.

    Args:
        op: the write; its index is ignored for a deletion.
        seq: the resource's store-wide sequence number.
        token: the id of the `apply` call writing it (`w`).
    """
    v = op.version
    doc: Doc = {
        "_id": resource_key(v.resource_type, v.id),
        "type": v.resource_type,
        "id": v.id,
        "seq": seq,
        "version_id": v.version_id,
        "last_updated": v.last_updated,
        "deleted": v.deleted,
        "method": v.method,
        "content": None if v.deleted else v.content,
        "w": token,
    }
    doc.update(index_fields(None if v.deleted else op.index))
    return doc


def claim_id(key: ClaimKey) -> str:
    """The `_id` of a `claims` document: `{scope}#{quantum}` (also `StoreConflict.key`)."""
    return f"{key.scope}#{key.quantum}"


def claim_doc(key: ClaimKey, owner: str, expires: int | None, token: str) -> Doc:
    """The `claims` document of `key` held by `owner` until `expires` (µs UTC or None),
    written by the `apply` call `token`."""
    return {
        "_id": claim_id(key),
        "scope": key.scope,
        "quantum": key.quantum,
        "owner": owner,
        "expires": expires,
        "w": token,
    }


def provisional_claim(
    doc: Doc, token: str, prev: Doc | None, fin: tuple[str, int | None] | None
) -> Doc:
    """`doc` (a claims document: its `_id`, scope, quantum, owner and stored expiry) made
    provisional for the apply `token`: `prev` is the claim before the call (None: free),
    `fin` the owner and expiry (µs UTC or None) once the call is committed (None: released)."""
    return {
        **{f: doc[f] for f in ("_id", "scope", "quantum", "owner")},
        "expires": doc.get("expires"),
        "w": token,
        "p": True,
        "prev": prev,
        "fin": None if fin is None else {"owner": fin[0], "expires": fin[1]},
    }


def committed_claim(doc: Doc) -> Doc | None:
    """The claims document a provisional `doc` becomes once its apply is committed (its
    `fin`, still carrying the apply's token), or None if that apply releases the key."""
    fin = doc.get("fin")
    if fin is None:
        return None
    kept = {f: v for f, v in doc.items() if f not in PROVISIONAL_FIELDS}
    return {**kept, "owner": fin["owner"], "expires": fin["expires"]}


def claim_from_doc(doc: Doc) -> Claim:
    """The Claim of a `claims` document."""
    expires = doc.get("expires")
    return Claim(
        ClaimKey(doc["scope"], int(doc["quantum"])),
        doc["owner"],
        None if expires is None else int(expires),
    )


def history_doc(v: StoredResource, hseq: int, token: str) -> Doc:
    """The `history` document of one version, `hseq` being its place in write order."""
    return {
        "_id": f"{v.resource_type}/{v.id}/{v.version_id}",
        "type": v.resource_type,
        "id": v.id,
        "version_id": v.version_id,
        "last_updated": v.last_updated,
        "deleted": v.deleted,
        "method": v.method,
        "content": None if v.deleted else v.content,
        "hseq": hseq,
        "w": token,
        "o": True,
    }


def index_fields(index: ResourceIndex | None) -> Doc:
    """The `idx`, `sort` and `comp` fields of a `resources` document (empty for None)."""
    idx: dict[str, list[Doc]] = {kind: [] for kind in IDX_KINDS}
    if index is None:
        return {"idx": idx, "sort": {}, "comp": []}
    for e in index.entries:
        match e:
            case StringEntry():
                idx["string"].append({"p": e.param, "n": e.norm, "e": e.exact})
            case TokenEntry():
                idx["token"].append({"p": e.param, "s": e.system, "c": e.code, "t": e.text})
            case DateEntry():
                idx["date"].append({"p": e.param, "lo": e.low, "hi": e.high})
            case ReferenceEntry():
                idx["reference"].append(
                    {
                        "p": e.param,
                        "rt": e.ref_type,
                        "ri": e.ref_id,
                        "u": e.url,
                        "is": e.identifier_system,
                        "iv": e.identifier_value,
                    }
                )
            case NumberEntry():
                idx["number"].append({"p": e.param, "v": e.value})
            case QuantityEntry():
                idx["quantity"].append(
                    {"p": e.param, "v": e.value, "s": e.system, "c": e.code, "u": e.unit}
                )
            case UriEntry():
                idx["uri"].append({"p": e.param, "v": e.value})
    sort: dict[str, Doc] = {}
    for sk in index.sort_keys:
        if sk.asc is None and sk.desc is None:
            continue
        asc = sk.asc if sk.asc is not None else sk.desc
        desc = sk.desc if sk.desc is not None else sk.asc
        sort[sk.param] = {"h": 1, "a": asc, "d": desc}
    return {"idx": idx, "sort": sort, "comp": list(dict.fromkeys(index.compartments))}
