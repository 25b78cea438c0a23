"""`fhir-server clients|users|launch|token|keys`: administration of the SMART authorization
server (SMART.md "Administration (CLI)").

Every command works on the configured database (`FHIR_SERVER_DATABASE_URL` or
`--database-url`) and signing keys (`FHIR_SERVER_SIGNING_KEYS`), also while the server runs.
The FHIR base URL tokens are issued for is `FHIR_SERVER_BASE_URL`, defaulting to
`http://127.0.0.1:8080/fhir` (what `fhir-server serve` uses by default).

Examples:
    fhir-server clients add my-app --type public --redirect-uri http://localhost:9000/cb \
        --scope 'openid fhirUser launch launch/patient offline_access patient/*.cruds'
    fhir-server clients add my-ehr --type backend --jwks-file ehr.jwks.json \
        --scope 'system/*.cruds' --launch-issuer
    fhir-server users add smith --fhir-user Practitioner/demo-practitioner-smith
    fhir-server launch --client my-app --patient demo-patient-munoz
    TOKEN=$(fhir-server token --scope 'system/*.cruds')
    fhir-server keys rotate
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

import orjson
import typer
from joserfc import jwt
from joserfc.jwk import KeySet
from rich.console import Console

from fhir_server.app import build_auth_server, build_repositories
from fhir_server.config import Settings
from fhir_server.storage.factory import open_store
from smart_auth.keys import new_key, public_jwk, rotate_keys
from smart_auth.registry import CLIENT_TYPES, Client, User, hash_secret, new_secret
from smart_auth.scopes import ScopeSet
from smart_auth.server import AuthServer

DEFAULT_BASE_URL = "http://127.0.0.1:8080/fhir"
console = Console(stderr=True)
T = TypeVar("T")

clients_app = typer.Typer(help="Register SMART clients (apps, EHRs, backend services).")
users_app = typer.Typer(help="Users who sign in at /auth/authorize.")
keys_app = typer.Typer(help="The server's token signing keys.")

DatabaseUrl = Annotated[
    str | None, typer.Option("--database-url", help="Default: FHIR_SERVER_DATABASE_URL.")
]


def auth_settings(database_url: str | None = None) -> Settings:
    """Settings from the environment with authorization on and a base URL filled in."""
    settings = Settings()
    update: dict[str, Any] = {"auth": True}
    if database_url:
        update["database_url"] = database_url
    if not settings.base_url:
        update["base_url"] = DEFAULT_BASE_URL
    return settings.model_copy(update=update)


@asynccontextmanager
async def opened(settings: Settings) -> AsyncIterator[AuthServer]:
    """A started AuthServer over the configured store (closed afterwards)."""
    store = open_store(settings.database_url)
    await store.start()
    try:
        repository = build_repositories(store, settings).for_server("fhir-server cli")
        server = build_auth_server(repository, settings)
        await server.start()
        yield server
    finally:
        await store.close()


def run(settings: Settings, work: Callable[[AuthServer], Awaitable[T]]) -> T:
    """Run `work` on an opened AuthServer."""

    async def main() -> T:
        async with opened(settings) as server:
            return await work(server)

    return asyncio.run(main())


def _jwks(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    data = orjson.loads(path.read_bytes())
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not keys:
        raise typer.BadParameter(f"{path} holds no JWK Set ({{'keys': [...]}})")
    return {"keys": [public_jwk(key) for key in keys]}


@clients_app.command("add")
def clients_add(
    client_id: Annotated[str, typer.Argument(help="The client_id.")],
    type: Annotated[str, typer.Option("--type", help=" | ".join(CLIENT_TYPES))] = "public",
    redirect_uri: Annotated[
        list[str] | None, typer.Option("--redirect-uri", help="Exact redirect URI (repeat).")
    ] = None,
    scope: Annotated[str, typer.Option(help="Scope ceiling.")] = (
        "openid fhirUser profile launch launch/patient offline_access online_access "
        "patient/*.cruds user/*.cruds"
    ),
    origin: Annotated[
        list[str] | None, typer.Option("--origin", help="Allowed browser origin (repeat).")
    ] = None,
    jwks_file: Annotated[Path | None, typer.Option(help="The client's public JWK Set.")] = None,
    jwks_url: Annotated[
        str | None, typer.Option(help="Where the client publishes its JWKS.")
    ] = None,
    name: Annotated[str, typer.Option(help="Shown on the consent page.")] = "",
    launch_url: Annotated[str | None, typer.Option(help="The app's EHR launch URL.")] = None,
    launch_issuer: Annotated[
        bool,
        typer.Option(
            "--launch-issuer",
            help="A backend client (the EHR) whose system/ tokens may create EHR launch "
            "contexts at POST /auth/launch.",
        ),
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Register (or replace) a client. A confidential-symmetric client's secret is printed
    once on stdout and stored only as an Argon2 hash. Only a backend client registered with
    `--launch-issuer` may create EHR launch contexts over HTTP."""
    if type not in CLIENT_TYPES:
        raise typer.BadParameter(f"--type must be one of {', '.join(CLIENT_TYPES)}")
    asymmetric = type in ("confidential-asymmetric", "backend")
    if asymmetric and not (jwks_file or jwks_url):
        raise typer.BadParameter(f"a {type} client needs --jwks-file or --jwks-url")
    if type != "backend" and not redirect_uri:
        raise typer.BadParameter("an app needs at least one --redirect-uri")
    if launch_issuer and type != "backend":
        raise typer.BadParameter("--launch-issuer is for a backend client (the EHR)")
    if type == "backend" and scope.startswith("openid"):
        scope = "system/*.cruds"
    secret = new_secret() if type == "confidential-symmetric" else None
    client = Client(
        client_id=client_id,
        type=type,
        name=name or client_id,
        redirect_uris=list(redirect_uri or []),
        scope=str(ScopeSet.parse(scope)),
        origins=list(origin or []),
        secret_hash=hash_secret(secret) if secret else None,
        jwks=_jwks(jwks_file),
        jwks_uri=jwks_url,
        launch_url=launch_url,
        launch_issuer=launch_issuer,
    )
    run(auth_settings(database_url), lambda s: s.registry.save_client(client))
    issuer = ", launch issuer" if launch_issuer else ""
    console.print(
        f"registered {type} client [bold]{client_id}[/bold] (scope: {client.scope}{issuer})"
    )
    if secret:
        console.print("client secret (shown once):", style="bold")
        typer.echo(secret)


@clients_app.command("list")
def clients_list(database_url: DatabaseUrl = None) -> None:
    """List registered clients (no secrets)."""
    for client in run(auth_settings(database_url), lambda s: s.registry.clients()):
        uris = ", ".join(client.redirect_uris) or "-"
        issuer = "\tlaunch-issuer" if client.launch_issuer else ""
        typer.echo(f"{client.client_id}\t{client.type}\t{uris}\t{client.scope}{issuer}")


@clients_app.command("remove")
def clients_remove(client_id: str, database_url: DatabaseUrl = None) -> None:
    """Unregister a client."""
    if not run(auth_settings(database_url), lambda s: s.registry.delete_client(client_id)):
        console.print(f"no client {client_id}")
        raise typer.Exit(code=1)


@users_app.command("add")
def users_add(
    username: str,
    fhir_user: Annotated[str, typer.Option(help="The user's FHIR resource, e.g. Patient/1.")],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from standard input.")
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Add (or replace) a user; the password is asked for (or read from stdin) and stored only
    as an Argon2id hash."""
    kind = fhir_user.split("/", 1)[0]
    if "/" not in fhir_user or kind not in ("Patient", "Practitioner", "RelatedPerson", "Person"):
        raise typer.BadParameter("--fhir-user must be Patient/id, Practitioner/id, ...")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        raise typer.BadParameter("the password needs at least 8 characters")
    user = User(username, hash_secret(password), fhir_user, name or username)
    run(auth_settings(database_url), lambda s: s.registry.save_user(user))
    console.print(f"user [bold]{username}[/bold] acts as {fhir_user}")


@keys_app.command("rotate")
def keys_rotate(database_url: DatabaseUrl = None) -> None:
    """Start signing with new keys; the old ones stay published until their tokens expire."""

    async def rotate(server: AuthServer) -> list[str]:
        keys = await rotate_keys(server.key_source, max(server.settings.access_seconds, 300))
        return [f"{k.kid}\t{k.alg}\t{'retired' if k.retired else 'active'}" for k in keys.keys]

    for line in run(auth_settings(database_url), rotate):
        typer.echo(line)


@clients_app.command("keygen")
def clients_keygen(
    out: Annotated[
        Path, typer.Argument(help="File prefix: writes OUT.private.json, OUT.public.json.")
    ],
    alg: Annotated[str, typer.Option(help="RS384 or ES384.")] = "RS384",
) -> None:
    """Make a key pair for a backend or asymmetric client (a developer tool: the private JWK
    Set is written 0600 and never needed by the server; register the public one)."""
    if alg not in ("RS384", "ES384"):
        raise typer.BadParameter("--alg must be RS384 or ES384")
    key = new_key(alg)
    private_path = Path(f"{out}.private.json")
    private_path.touch(mode=0o600)
    private_path.write_bytes(orjson.dumps({"keys": [key.jwk]}))
    Path(f"{out}.public.json").write_bytes(orjson.dumps({"keys": [public_jwk(key.jwk)]}))
    console.print(f"wrote {private_path} (keep it secret) and {out}.public.json (kid {key.kid})")


@clients_app.command("assertion")
def clients_assertion(
    client_id: Annotated[str, typer.Argument(help="The backend client's id (iss and sub).")],
    key: Annotated[Path, typer.Option(help="The client's private JWK Set.")],
    token_url: Annotated[str, typer.Option(help="The token endpoint (the assertion's aud).")],
) -> None:
    """Print a signed `private_key_jwt` client assertion (RFC 7523; 5-minute `exp`, fresh
    `jti`), as a backend client sends it: a developer tool for trying client credentials."""
    data = orjson.loads(key.read_bytes())
    signing = [k for k in data.get("keys", []) if "d" in k and "sign" in k.get("key_ops", ["sign"])]
    if not signing:
        raise typer.BadParameter(f"{key} holds no private signing key")
    jwk = KeySet.import_key_set({"keys": signing}).keys[0]
    alg = signing[0].get("alg") or ("ES384" if signing[0]["kty"] == "EC" else "RS384")
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "iat": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
    }
    header = {"alg": alg, "kid": jwk.kid or signing[0].get("kid"), "typ": "JWT"}
    typer.echo(jwt.encode(header, claims, jwk, algorithms=[alg]))


def register(app: typer.Typer) -> None:
    """Add the authorization commands to the `fhir-server` command."""
    app.add_typer(clients_app, name="clients")
    app.add_typer(users_app, name="users")
    app.add_typer(keys_app, name="keys")

    @app.command()
    def token(
        scope: Annotated[str, typer.Option(help="Scopes of the token.")] = "system/*.cruds",
        lifetime: Annotated[int, typer.Option(help="Seconds.")] = 3600,
        database_url: DatabaseUrl = None,
    ) -> None:
        """Mint an administrator access token (printed once on stdout; revocable)."""
        granted = ScopeSet.parse(scope)
        if granted.unknown or not granted.resources:
            raise typer.BadParameter(f"not resource scopes: {scope!r}")
        typer.echo(
            run(auth_settings(database_url), lambda s: s.mint_admin_token(str(granted), lifetime))
        )

    @app.command()
    def launch(
        patient: Annotated[str, typer.Option(help="Patient id in context.")],
        client: Annotated[str | None, typer.Option(help="Print this client's launch URL.")] = None,
        encounter: Annotated[str | None, typer.Option(help="Encounter id in context.")] = None,
        user: Annotated[
            str | None, typer.Option(help="The EHR user's FHIR reference, e.g. Practitioner/1.")
        ] = None,
        banner: Annotated[bool, typer.Option(help="need_patient_banner.")] = True,
        style_url: Annotated[str | None, typer.Option(help="smart_style_url.")] = None,
        database_url: DatabaseUrl = None,
    ) -> None:
        """Create a single-use EHR launch context and print the app's launch URL."""
        settings = auth_settings(database_url)
        context: dict[str, Any] = {"patient": patient, "need_patient_banner": banner}
        if encounter:
            context["encounter"] = encounter
        if user:
            context["user"] = user
        if style_url:
            context["smart_style_url"] = style_url

        async def create(server: AuthServer) -> tuple[str, str | None]:
            url = None
            if client:
                registered = await server.registry.client(client)
                if registered is None:
                    raise typer.BadParameter(f"no client {client}")
                url = registered.launch_url or next(iter(registered.redirect_uris), None)
            launch_id = await server.grants.create_launch(context, settings.launch_seconds)
            return launch_id, url

        launch_id, url = run(settings, create)
        query = urlencode({"iss": settings.base_url, "launch": launch_id})
        typer.echo(f"{url}?{query}" if url else query)
