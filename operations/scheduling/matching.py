"""Which Schedules match a search: by id, actor (kinds AND, repeats OR), service type,
specialty, site and organization, each criterion a store search, never a scan (SCHEDULING.md
"Operations": `$find`, `$find-slots`). References are canonical `Type/id` (operation
parameters are read with `resources.references`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from fhir_server.repository import Lookup
from fhir_server.search.query import (
    Condition,
    ReferenceCondition,
    ReferenceValue,
    StoreQuery,
    TokenCondition,
    TokenValue,
)

__all__ = ["ScheduleMatcher", "reference_parts"]

_ACTOR_KINDS: Final = {"PractitionerRole": "Practitioner"}
_SCHEDULE_ELEMENT: Final = {"service-type": "serviceType", "specialty": "specialty"}


def _by_id(resources: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(r.get("id")): r for r in resources}


def _intersect(
    found: dict[str, dict[str, Any]] | None, more: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    return more if found is None else {k: v for k, v in found.items() if k in more}


def reference_parts(text: str, default_type: str | None = None) -> tuple[str, str] | None:
    """`(type, id)` of a canonical `Type/id` (operation parameters are made canonical with
    `resources.references` when they are read), or of a bare `id` when `default_type` is
    given; None for anything else."""
    rtype, _, rid = text.strip().partition("/")
    if not rid:
        return (default_type, rtype) if default_type and rtype else None
    return (rtype, rid) if "/" not in rid else None


class ScheduleMatcher:
    """Finds Schedules through unchecked reads (`Repository.lookup`).

    Args:
        lookup: the request's lookup.
    """

    def __init__(self, lookup: Lookup) -> None:
        self.lookup = lookup

    async def schedules(
        self,
        *,
        schedule_ids: Sequence[str] = (),
        actors: Sequence[str] = (),
        service_types: Sequence[TokenValue] = (),
        specialties: Sequence[TokenValue] = (),
        location_refs: Sequence[str] = (),
        organization_refs: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """The active Schedules matching every given criterion (repeats of one criterion OR).

        - `schedule_ids`: ids (`7`) or references (`Schedule/7`).
        - `actors`: `Type/id` references; kinds combine with AND, repeats of a kind with OR
          (SCHEDULING.md "Operations"); `Practitioner/y` also matches Schedules whose actor is
          a PractitionerRole of that Practitioner (both count as one kind).
        - `service_types` / `specialties`: tokens on the Schedule, or, for a Schedule without
          that element, on its HealthcareService actors (`type`/`specialty`) or
          PractitionerRole actors (`specialty`, or the `healthcareService` they offer).
        - `location_refs`: a Location actor, or a PractitionerRole/HealthcareService actor at
          that Location. `organization_refs`: an actor whose `organization`, `providedBy` or
          `managingOrganization` is that Organization.

        Every criterion is a store search (no scan); the result is sorted by id.
        """
        base: list[Condition] = [TokenCondition("active", (TokenValue("*", "false"),), negate=True)]
        if schedule_ids:
            ids = [ref[1] for ref in (reference_parts(s, "Schedule") for s in schedule_ids) if ref]
            if not ids:
                return []
            base.append(TokenCondition("_id", tuple(TokenValue("*", i) for i in ids)))
        base.extend(await self._actor_conditions(actors))
        found: dict[str, dict[str, Any]] | None = None
        for param, tokens in (("service-type", service_types), ("specialty", specialties)):
            if tokens:
                found = _intersect(found, await self._by_code(base, param, tokens))
        if location_refs:
            found = _intersect(found, await self._by_site(base, location_refs))
        if organization_refs:
            found = _intersect(found, await self._by_organization(base, organization_refs))
        if found is None:
            found = _by_id(await self.lookup.search_all(StoreQuery("Schedule", tuple(base))))
        return [found[key] for key in sorted(found)]

    async def _ids(self, rtype: str, *conditions: Condition) -> list[tuple[str, str]]:
        return [
            (rtype, str(r["id"]))
            for r in await self.lookup.search_all(StoreQuery(rtype, conditions))
        ]

    async def _with_actors(
        self, base: list[Condition], refs: Sequence[tuple[str, str]]
    ) -> dict[str, dict[str, Any]]:
        if not refs:
            return {}
        values = tuple(ReferenceValue(t, i) for t, i in dict.fromkeys(refs))
        query = StoreQuery("Schedule", (*base, ReferenceCondition("actor", values)))
        return _by_id(await self.lookup.search_all(query))

    async def _actor_conditions(self, actors: Sequence[str]) -> list[Condition]:
        kinds: dict[str, list[ReferenceValue]] = {}
        practitioners: list[ReferenceValue] = []
        for text in actors:
            ref = reference_parts(text)
            if ref is None:
                continue
            value = ReferenceValue(*ref)
            kinds.setdefault(_ACTOR_KINDS.get(ref[0], ref[0]), []).append(value)
            if ref[0] == "Practitioner":
                practitioners.append(value)
        if practitioners:
            condition = ReferenceCondition("practitioner", tuple(practitioners))
            roles = await self._ids("PractitionerRole", condition)
            kinds["Practitioner"].extend(ReferenceValue(*role) for role in roles)
        return [ReferenceCondition("actor", tuple(values)) for values in kinds.values()]

    async def _by_code(
        self, base: list[Condition], param: str, tokens: Sequence[TokenValue]
    ) -> dict[str, dict[str, Any]]:
        codes = TokenCondition(param, tuple(tokens))
        direct = _by_id(await self.lookup.search_all(StoreQuery("Schedule", (*base, codes))))
        services = await self._ids("HealthcareService", codes)
        roles = []
        if param == "specialty":
            roles = await self._ids("PractitionerRole", codes)
        if services:
            offered = ReferenceCondition("service", tuple(ReferenceValue(*s) for s in services))
            roles += await self._ids("PractitionerRole", offered)
        element = _SCHEDULE_ELEMENT[param]
        via = await self._with_actors(base, [*services, *roles])
        direct.update({k: v for k, v in via.items() if not v.get(element)})
        return direct

    async def _by_site(
        self, base: list[Condition], location_refs: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        sites = [
            ref for ref in (reference_parts(text, "Location") for text in location_refs) if ref
        ]
        if not sites:
            return {}
        at = ReferenceCondition("location", tuple(ReferenceValue(*site) for site in sites))
        roles = await self._ids("PractitionerRole", at)
        services = await self._ids("HealthcareService", at)
        return await self._with_actors(base, [*sites, *roles, *services])

    async def _by_organization(
        self, base: list[Condition], organization_refs: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        orgs = [
            ref for ref in (reference_parts(t, "Organization") for t in organization_refs) if ref
        ]
        if not orgs:
            return {}
        of = ReferenceCondition("organization", tuple(ReferenceValue(*org) for org in orgs))
        actors: list[tuple[str, str]] = []
        for rtype in ("PractitionerRole", "HealthcareService", "Location"):
            actors += await self._ids(rtype, of)
        return await self._with_actors(base, actors)
