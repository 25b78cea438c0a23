"""The composition root: `create_app(settings)` builds the FastAPI application.

It opens the configured ResourceStore at start-up (creating schema and indexes) and hands it
to the `RepositoryFactory` — from then on the store is reached only through request-scoped
repositories (ARCHITECTURE.md "One way in"). It registers the Appointment booking rules and the
computed resources on the factory, wires operations, the bundle processor and the
CapabilityStatement into the interaction dispatcher, publishes our conformance resources, mounts
the FHIR endpoint at `/fhir`, and installs the OperationOutcome error handlers. Nothing is built
at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from prometheus_client import multiprocess
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from conformance import bulk_data, operation_definitions
from conformance.capability import capability_statement
from conformance.smart_configuration import rest_security
from fhir_server.access import AccessPolicy, SystemPolicy
from fhir_server.api.bulk_data import bulk_data_routes
from fhir_server.api.errors import (
    fhir_error_handler,
    http_error_handler,
    unexpected_error_handler,
    unexpected_error_response,
)
from fhir_server.api.fhir_endpoint import FHIR_PREFIX, FhirMount, fhir_endpoint
from fhir_server.api.health import health_routes
from fhir_server.api.metrics_endpoint import metrics_routes
from fhir_server.api.portal import portal_routes
from fhir_server.api.request_log import RequestLog, enable_access_log
from fhir_server.api.waitlist_links import waitlist_link_routes
from fhir_server.api.websocket import websocket_routes
from fhir_server.bundles import BundleProcessor
from fhir_server.config import Settings, canonical_root, get_settings
from fhir_server.interactions import Interactions
from fhir_server.messages import Operation
from fhir_server.metrics import MULTIPROCESS
from fhir_server.repository import Repository, RepositoryFactory
from fhir_server.storage.base import ResourceStore
from fhir_server.storage.factory import open_store
from operations import (
    appointment_book,
    appointment_find,
    appointment_hold,
    patient_everything,
    slot_find_slots,
    subscription_events,
    subscription_get_ws_binding_token,
    subscription_status,
    validate,
)
from operations.bulk_export import BulkExports
from operations.messaging import JOB as MESSAGING
from operations.messaging import run_messaging
from operations.reminders.planner import ReminderPlanner
from operations.reminders.requests import parse_offsets
from operations.scheduling.appointments import read_proposal
from operations.scheduling.booking_rules import BookingRules
from operations.scheduling.definitions import structure_definitions
from operations.scheduling.holds import SWEEPER, run_sweeper, sweep_interval
from operations.scheduling.service import SchedulingService
from operations.subscription_get_ws_binding_token import websocket_url
from operations.subscriptions.dispatch_loop import run_dispatcher
from operations.subscriptions.dispatcher import Restore
from operations.subscriptions.rules import DISPATCHER, SubscriptionRules, subscription_owner
from operations.subscriptions.topics import TOPICS, topic_resources
from operations.waitlist.matcher import WaitlistMatcher
from resources.errors import FhirError
from resources.indexing import extract_index
from resources.validation import validate_resource
from smart_auth.audit import AuthAudit, denial_recorder
from smart_auth.grants import Grants
from smart_auth.keys import key_source
from smart_auth.portal_client import register_portal
from smart_auth.registry import Registry
from smart_auth.routes import auth_routes
from smart_auth.server import AuthServer, AuthSettings

log = logging.getLogger("fhir_server")


def default_operations() -> dict[str, Operation]:
    """The operations this server registers, by name (without `$`)."""
    ops = [validate.OPERATION, patient_everything.OPERATION, slot_find_slots.OPERATION]
    ops += [  # Subscriptions R5 Backport IG
        subscription_status.OPERATION,
        subscription_events.OPERATION,
        subscription_get_ws_binding_token.OPERATION,
    ]
    for module in (appointment_find, appointment_hold, appointment_book):  # IHE ITI-115..117
        operation_definitions.register(module.DEFINITION)
        ops.append(module.OPERATION)
    return {op.name: op for op in ops}


def build_interactions(settings: Settings, exports: BulkExports | None = None) -> Interactions:
    """Wire operations, bundles and capabilities into the dispatcher (the CapabilityStatement
    announces SMART's `rest.security` when authorization is on); with `exports`, Bulk Data
    `$export` too."""
    ops = default_operations()
    if exports is not None:
        for definition in bulk_data.definitions():
            operation_definitions.register(definition)
        ops["export"] = exports.operation()
    operations = operation_definitions.with_definitions(ops, settings.extension_base)
    cache: dict[str, dict[str, Any]] = {}
    security = rest_security(settings.base_url) if settings.auth and settings.base_url else None

    root = canonical_root(settings.extension_base)
    topics = [topic.url(root) for topic in TOPICS.values()]

    def capabilities(base_url: str) -> dict[str, Any]:
        if base_url not in cache:
            cache[base_url] = capability_statement(
                base_url,
                operations,
                security=security,
                topics=topics,
                websocket_url=websocket_url(base_url),
            )
        return cache[base_url]

    interactions = Interactions(operations, capabilities)
    interactions.bundle_handler = BundleProcessor(interactions.dispatch)
    return interactions


def build_repositories(store: ResourceStore, settings: Settings) -> RepositoryFactory:
    """The repositories of a started store: the Appointment booking rules on every write
    (SCHEDULING.md "Booking rules on every path"), rule-derived Slots and `$find` proposals
    readable by id."""
    factory = RepositoryFactory(store, settings)
    factory.rules["Appointment"] = BookingRules()
    factory.rules["Subscription"] = SubscriptionRules()
    factory.owners["Subscription"] = subscription_owner

    async def rule_slot(repository: Repository, slot_id: str) -> dict[str, Any] | None:
        return await SchedulingService(repository).rule_slot(slot_id)

    factory.virtual["Slot"] = rule_slot
    factory.virtual["Appointment"] = read_proposal
    return factory


async def publish_conformance(repository: Repository, settings: Settings) -> None:
    """Store our OperationDefinitions and extension StructureDefinitions (identical content
    makes no new version), so they are read, searched (`OperationDefinition?url=`) and
    versioned like any resource (R4 conformance-module; SCHEDULING.md "Our own extensions").
    Workers starting together race harmlessly: `update` prepares again after a lost version
    race and then finds the content unchanged. Measured: ~7 ms on a restart (nothing changes),
    ~235 ms on a first start (validation's first use of the models)."""
    base = settings.extension_base
    topics = topic_resources(canonical_root(base))
    for resource in [*operation_definitions.all(base), *structure_definitions(base), *topics]:
        await repository.update(resource["resourceType"], resource["id"], resource)


def _warm_up() -> None:
    """Load the lazily built FHIR tables now, then move everything alive into the garbage
    collector's permanent generation: the first request pays nothing, and full collections no
    longer walk hundreds of thousands of long-lived objects (a multi-ms pause under load)."""
    extract_index({"resourceType": "Patient", "id": "warm-up", "name": [{"family": "x"}]})
    validate_resource({"resourceType": "Patient"})
    gc.collect()
    gc.freeze()


async def _guarded(request: Request) -> Response:
    try:
        return await fhir_endpoint(request)
    except FhirError as exc:
        return await fhir_error_handler(request, exc)
    except Exception as exc:  # anything else: a 500 OperationOutcome, never a traceback
        return unexpected_error_response(exc, getattr(request.state, "request_id", None))


def build_auth_server(repository: Repository, settings: Settings) -> AuthServer:
    """The SMART authorization server over a job repository's records (keys loaded by
    `AuthServer.start`)."""
    if not settings.base_url:
        raise ValueError(
            "Authorization needs the public FHIR base URL: set FHIR_SERVER_BASE_URL "
            "(`fhir-server serve` derives it from --host/--port)"
        )
    auth_settings = AuthSettings(
        base_url=settings.base_url.rstrip("/"),
        access_seconds=settings.access_token_seconds,
        refresh_seconds=settings.refresh_token_seconds,
        launch_seconds=settings.launch_seconds,
        default_tz=settings.default_timezone,
        per_user=settings.rate_limit_per_user,
        per_client=settings.rate_limit_per_client,
        logins=settings.logins_per_minute,
    )
    records = repository.records
    return AuthServer(
        auth_settings,
        Registry(records),
        Grants(records, auth_settings.code_seconds, auth_settings.refresh_seconds),
        key_source(settings.signing_keys, records),
    )


def _restorer(auth: AuthServer | None) -> Restore:
    """How the dispatcher turns a Subscription creator's credentials back into a policy:
    the authorization server's `restore_policy`, or (authorization off) the system policy."""
    if auth is not None:
        return auth.restore_policy

    async def unrestricted(credentials: dict[str, Any]) -> AccessPolicy | None:
        return SystemPolicy(str(credentials.get("system") or "anonymous"))

    return unrestricted


def create_app(settings: Settings | None = None, store: ResourceStore | None = None) -> FastAPI:
    """Build the application.

    Args:
        settings: configuration (default: from the environment).
        store: an unstarted store to use instead of opening `settings.database_url`
            (tests pass in-memory or mongomock stores).

    Raises:
        ValueError: authorization is on but `settings.base_url` is empty (the `aud` tokens
            must carry is never taken from a request's Host header, SMART.md), or
            `reminder_offsets` is not a list of ISO 8601 durations.
    """
    settings = settings or get_settings()
    parse_offsets(settings.reminder_offsets)  # a bad FHIR_SERVER_REMINDER_OFFSETS fails here
    the_store = store or open_store(settings.database_url)
    repositories = build_repositories(the_store, settings)
    exports = BulkExports(settings)
    auth_repository = repositories.for_server("authorization server", settings.base_url)
    auth = build_auth_server(auth_repository, settings) if settings.auth else None
    if auth is None:
        log.warning(
            "AUTHORIZATION IS OFF (FHIR_SERVER_AUTH=off): every request is accepted without "
            "a token. Never expose this server beyond your own machine."
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await the_store.start()
        app.state.interactions = build_interactions(settings, exports)
        await publish_conformance(repositories.for_server("start-up"), settings)
        await ReminderPlanner(repositories.for_job(MESSAGING)).start()
        await WaitlistMatcher(repositories.for_job(MESSAGING)).start()
        sweeper = repositories.for_job(SWEEPER, settings.base_url)
        dispatcher = repositories.for_job(DISPATCHER, settings.base_url)
        background = [
            asyncio.create_task(run_sweeper(sweeper, sweep_interval(settings.hold_seconds))),
            asyncio.create_task(run_dispatcher(dispatcher, _restorer(auth))),
            asyncio.create_task(run_messaging(repositories.for_job(MESSAGING, settings.base_url))),
            asyncio.create_task(exports.run_purger(repositories.for_job("bulk-export purge"))),
        ]
        if auth is not None:
            audit = AuthAudit(auth_repository, auth.settings.base_url, settings.extension_base)
            auth.audit = audit
            await auth.start()
            await register_portal(auth.registry, settings.base_url)
            app.state.authenticate = auth.policy
            app.state.on_denied = denial_recorder(audit)
        _warm_up()
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            await exports.close()
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await the_store.close()
            if MULTIPROCESS:  # this worker's live gauges stop counting
                multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    app = FastAPI(
        title="FHIR R4 scheduling server",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.repositories = repositories
    app.state.exports = exports
    app.state.authenticate = None
    app.state.on_denied = None
    app.state.ready = False
    app.state.auth = auth
    app.add_exception_handler(FhirError, fhir_error_handler)
    app.add_exception_handler(HTTPException, http_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
    app.add_middleware(FhirMount, handler=_guarded)
    app.add_middleware(RequestLog)  # added last: the outermost, around every request
    if settings.access_log:
        enable_access_log()

    async def root(_request: Request) -> Response:
        return RedirectResponse(FHIR_PREFIX + "/metadata")

    app.router.routes.append(Route("/", root, methods=["GET"]))
    app.router.routes.extend(websocket_routes())
    app.router.routes.extend(bulk_data_routes())
    app.router.routes.extend(waitlist_link_routes())
    app.router.routes.extend(portal_routes())
    app.router.routes.extend(health_routes())
    app.router.routes.extend(metrics_routes(lambda: settings.metrics))
    if auth is not None:
        app.router.routes.extend(auth_routes(auth, auth_repository))
    return app
