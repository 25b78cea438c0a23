"""The SMART and OpenID discovery documents and the CapabilityStatement's `rest.security`.

SMART App Launch 2.2 `conformance.html` (`[base]/.well-known/smart-configuration`, every field
it lists, `code_challenge_methods_supported: ["S256"]` only), OpenID Connect Discovery 1.0 §3
(`[base]/.well-known/openid-configuration`, the same issuer), and the `oauth-uris` extension of
`CapabilityStatement.rest.security` (`http://fhir-registry.smarthealthit.org/
StructureDefinition/oauth-uris`) through which older clients, Python `fhirclient` among them,
discover the endpoints.
"""

from __future__ import annotations

from typing import Any

from smart_auth.scopes import CONTEXTS, KNOWN_SCOPES

CAPABILITIES = [
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "sso-openid-connect",
    "context-banner",
    "context-style",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
]
SCOPES_SUPPORTED = [
    *KNOWN_SCOPES,
    *(f"{context}/*.{p}" for p in ("cruds", "read", "write") for context in CONTEXTS),
]
GRANT_TYPES = ["authorization_code", "refresh_token", "client_credentials"]
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def origin_of(base_url: str) -> str:
    """`scheme://host:port` of a FHIR base URL: where the `/auth/...` endpoints live."""
    scheme, _, rest = base_url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def auth_endpoint(base_url: str, name: str) -> str:
    """The absolute URL of `/auth/{name}` for the server of `base_url`."""
    return f"{origin_of(base_url)}/auth/{name}"


def endpoints(base_url: str) -> dict[str, str]:
    """The authorization server's endpoint URLs, by name."""
    names = ("authorize", "token", "introspect", "revoke", "jwks", "launch")
    return {name: auth_endpoint(base_url, name) for name in names}


def smart_configuration(base_url: str) -> dict[str, Any]:
    """`[base]/.well-known/smart-configuration` (SMART App Launch 2.2 §2.2.1)."""
    urls = endpoints(base_url)
    return {
        "issuer": base_url,
        "jwks_uri": urls["jwks"],
        "authorization_endpoint": urls["authorize"],
        "token_endpoint": urls["token"],
        "introspection_endpoint": urls["introspect"],
        "revocation_endpoint": urls["revoke"],
        "grant_types_supported": GRANT_TYPES,
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": CAPABILITIES,
    }


def openid_configuration(base_url: str) -> dict[str, Any]:
    """`[base]/.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §3)."""
    urls = endpoints(base_url)
    return {
        "issuer": base_url,
        "authorization_endpoint": urls["authorize"],
        "token_endpoint": urls["token"],
        "jwks_uri": urls["jwks"],
        "introspection_endpoint": urls["introspect"],
        "revocation_endpoint": urls["revoke"],
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "fhirUser", "profile", "offline_access"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser", "name"],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": GRANT_TYPES,
    }


def rest_security(base_url: str) -> dict[str, Any]:
    """`CapabilityStatement.rest.security`: the SMART-on-FHIR service and `oauth-uris`."""
    urls = endpoints(base_url)
    return {
        "cors": True,
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }
                ],
                "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
            }
        ],
        "extension": [
            {
                "url": OAUTH_URIS,
                "extension": [
                    {"url": name, "valueUri": urls[name]}
                    for name in ("authorize", "token", "introspect", "revoke")
                ],
            }
        ],
        "description": "SMART App Launch 2.2: EHR and standalone launch, backend services",
    }
