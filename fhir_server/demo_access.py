"""The demo clinic's SMART access: a ready public app and two logins (`make run`, `--demo`).

* client `demo-app`: public (PKCE), redirect `http://127.0.0.1:9000/callback`, scopes up to
  `openid fhirUser launch launch/patient offline_access patient/*.cruds user/*.cruds`;
* user `munoz` / `demo-munoz` acts as `Patient/demo-patient-munoz` (a patient portal login);
* user `smith` / `demo-smith` acts as `Practitioner/demo-pract-smith` (picks a patient).

These passwords are public: the demo is for a developer's own machine.
"""

from __future__ import annotations

from fhir_server.model import RecordStore
from smart_auth.registry import Client, Registry, User, hash_secret
from smart_auth.scopes import ScopeSet

DEMO_CLIENT_ID = "demo-app"
DEMO_REDIRECT_URI = "http://127.0.0.1:9000/callback"
DEMO_SCOPE = (
    "openid fhirUser profile launch launch/patient online_access offline_access "
    "patient/*.cruds user/*.cruds patient/*.read patient/*.write user/*.read user/*.write"
)
DEMO_LOGINS = (
    ("munoz", "demo-munoz", "Patient/demo-patient-munoz"),
    ("smith", "demo-smith", "Practitioner/demo-pract-smith"),
)


async def register_demo_access(records: RecordStore) -> None:
    """Register the demo client and users unless they already exist (idempotent)."""
    registry = Registry(records)
    if await registry.client(DEMO_CLIENT_ID) is None:
        await registry.save_client(
            Client(
                client_id=DEMO_CLIENT_ID,
                type="public",
                name="Demo scheduling app",
                redirect_uris=[DEMO_REDIRECT_URI, "http://localhost:9000/callback"],
                scope=str(ScopeSet.parse(DEMO_SCOPE)),
                origins=["http://127.0.0.1:9000", "http://localhost:9000"],
                launch_url="http://127.0.0.1:9000/launch",
            )
        )
    for username, password, fhir_user in DEMO_LOGINS:
        if await registry.user(username) is None:
            await registry.save_user(User(username, hash_secret(password), fhir_user, username))
