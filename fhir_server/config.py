"""Server settings from the environment (prefix `FHIR_SERVER_`), behind a cached provider.

Nothing is read at import time: `get_settings()` builds the settings on first use, and tests
build their own `Settings(...)` and pass it to `create_app`.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime configuration.

    Attributes:
        database_url: `sqlite:///path/to/file.db` (default `sqlite:///./data/fhir.db`),
            `sqlite:///:memory:` or `mongodb://host/dbname`.
        base_url: the public FHIR base URL used in links and `Location` headers; when empty it
            is derived from each request (`http://host:port/fhir`).
        max_body_bytes: the largest request body accepted (default 10 MB) -> 413 beyond.
        default_count / max_count: `_count` default and ceiling for searches.
        default_timezone: IANA zone used for dates without an offset (and for schedules
            with no timezone extension anywhere, SCHEDULING.md "Time zone").
        hold_seconds: how long a `$hold` keeps its time (SCHEDULING.md), default 300.
        proposal_seconds: how long `$find` proposals stay resolvable, default 1800.
        extension_base: the canonical base of our own extensions and StructureDefinitions.
        auth: SMART on FHIR authorization (SMART.md), on by default; `FHIR_SERVER_AUTH=off`
            accepts every request without a token (local development only).
        signing_keys: where the token signing keys live: a JSON file path (created 0600 on
            first start) or `database`.
        access_token_seconds / refresh_token_seconds: token lifetimes (1 hour / 90 days).
        launch_seconds: how long an EHR launch context waits to be used (1 hour).
        access_log: one JSON line per request on stdout (`fhir_server.api.request_log`),
            default on.
        metrics: `GET /metrics` in the Prometheus format (`fhir_server.api.metrics_endpoint`),
            default on; off answers 404.
        registrations_per_hour: how many patient accounts one client address may create
            an hour at `POST /auth/register` (10).
        rate_limit_per_user / rate_limit_per_client: requests a minute one signed-in user /
            one client's tokens may make (100 / 6000; 0: unlimited; the administrator's
            `fhir-server token` tokens are not limited), `smart_auth.rate_limits`.
        logins_per_minute: sign-in attempts a minute from one client address (20).

    Subscriptions (R4 Subscription, `operations/subscriptions/`):
        subscription_retry_hours: how long a failing delivery is retried, with exponential
            backoff and jitter, before the Subscription turns `error` (default 24).
        subscription_allowed_hosts: comma-separated hosts a notification may go to over plain
            `http` or at a private address (default loopback only: `127.0.0.1,::1,localhost`);
            any other endpoint must be `https` at a public address.
        subscription_poll_seconds: how often the dispatcher looks for new events (0.05).
        subscription_backoff_seconds: the first retry delay of a failed delivery, doubling
            per failure up to 5 minutes, with jitter (1.0).
        subscription_event_days: how long a Subscription's notified events stay replayable
            by `$events` and websocket catch-up (7).
        smtp_url: the SMTP server email notifications go through, `smtp://host:port`
            (`smtps://` for implicit TLS; `user:password@` for login); "" refuses email
            channels.
        mail_from: the sender address of email notifications and reminders.

    Reminders (`operations/reminders/`):
        reminder_offsets: comma-separated ISO 8601 durations before an Appointment's start at
            which its Patient is reminded (default `P1D,PT2H`); "" for none.
        dispatch_seconds: how often due reminders are looked for and sent (60; at most 60).
        sms_url: a Twilio-compatible Messages API, the full `.../Accounts/{sid}/Messages.json`
            URL; "" sends no SMS. sms_account / sms_token: its basic-auth user and password.
        sms_from: the sending number (`From`).

    Waitlist (`operations/waitlist/`):
        waitlist_offer_seconds: how long freed time offered to a waiting patient is held for
            them (and how far ahead of now an offered time starts at the earliest); default
            900 (15 minutes).

    Bulk Data export (`operations/bulk_export.py`; Bulk Data Access 2.0 `$export`):
        export_dir: where the ndjson files of exports are written, one folder per export
            (default `./data/exports`; every server process must see the same folder).
        export_seconds: how long a finished export's files stay downloadable, from its
            completion (default 3600 s = 1 hour; the `Expires` header); a background job
            deletes them afterwards.
        export_poll_seconds: the `Retry-After` (s) of a running export's status; a poll
            sooner than that after the previous one gets 429 (default 2).
        export_max_running: how many exports one client (or user) may run at once; one
            more kick-off gets 429 (default 2).
    """

    model_config = SettingsConfigDict(env_prefix="FHIR_SERVER_", extra="ignore")

    database_url: str = "sqlite:///./data/fhir.db"
    base_url: str = ""
    max_body_bytes: int = 10 * 1024 * 1024
    default_count: int = 20
    max_count: int = 1000
    default_timezone: str = "UTC"
    hold_seconds: int = 300
    proposal_seconds: int = 1800
    extension_base: str = "https://fhir-scheduling.example.org/StructureDefinition"
    auth: bool = True
    signing_keys: str = "./data/signing-keys.json"
    access_token_seconds: int = 3600
    refresh_token_seconds: int = 90 * 24 * 3600
    launch_seconds: int = 3600
    registrations_per_hour: int = 10
    rate_limit_per_user: int = 100
    rate_limit_per_client: int = 6000
    logins_per_minute: int = 20
    access_log: bool = True
    metrics: bool = True

    # -- Bulk Data export (see the class docstring) --
    export_dir: str = "./data/exports"
    export_seconds: int = 3600
    export_poll_seconds: int = 2
    export_max_running: int = 2

    # -- subscriptions --
    subscription_retry_hours: float = 24.0
    subscription_allowed_hosts: str = "127.0.0.1,::1,localhost"
    subscription_poll_seconds: float = 0.05
    subscription_backoff_seconds: float = 1.0
    subscription_event_days: float = 7.0
    smtp_url: str = ""
    mail_from: str = "fhir-server@localhost"

    # -- reminders --
    reminder_offsets: str = "P1D,PT2H"
    dispatch_seconds: float = 60.0
    sms_url: str = ""
    sms_account: str = ""
    sms_token: str = ""
    sms_from: str = ""

    # -- waitlist --
    waitlist_offer_seconds: int = 900


DEFAULT_CANONICAL_ROOT = "https://fhir-scheduling.example.org"
"""The server-neutral canonical root of our conformance resources (`{root}/{Type}/{id}`)."""


def canonical_root(extension_base: str | None = None) -> str:
    """The canonical root of our conformance resources for an extension base: the base
    without a trailing `/StructureDefinition` (`https://x.org/StructureDefinition` ->
    `https://x.org`); DEFAULT_CANONICAL_ROOT when empty."""
    if not extension_base:
        return DEFAULT_CANONICAL_ROOT
    base = extension_base.rstrip("/")
    structure = "/StructureDefinition"
    return base[: -len(structure)] if base.endswith(structure) else base


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read from the environment on first call."""
    return Settings()
