"""SMART App Launch 2.2 authorization server and scope enforcement (see shared/specs/SMART.md).

Modules, bottom up:

* `scopes` — scope grammar (v1, v2, granular) and coverage;
* `policy` — `ScopePolicy`, the `fhir_server.access.AccessPolicy` of one token;
* `keys`, `tokens` — the server's signing keys and its JWT access and id tokens;
* `registry`, `grants` — clients, users, grants, codes, refresh tokens, launch contexts;
* `client_auth` — client authentication (secrets, `private_key_jwt`);
* `server` — keys, introspection, revocation, bearer verification;
* `token_grants` — `/auth/token`: authorization code, refresh, client credentials;
* `authorize`, `pages` — the authorization endpoint and its HTML;
* `audit` — AuditEvents of logins, grants and denials;
* `routes` — the Starlette routes `fhir_server.app` mounts.
"""
