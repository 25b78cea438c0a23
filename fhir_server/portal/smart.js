// SMART on FHIR sign-in for the portal's pages, through the fhirclient library (window.FHIR,
// vendor/fhir-client.pure.min.js): a standalone launch with PKCE against this server's
// /auth/authorize, or an EHR launch (the `launch` and `iss` parameters, handled by fhirclient).
export const CLIENT_ID = "portal";
export const FHIR_BASE = `${location.origin}/fhir`;

/** Start the authorization (leaves the page). */
export function signIn(scope) {
  return window.FHIR.oauth2.authorize({
    clientId: CLIENT_ID,
    scope,
    iss: FHIR_BASE,
    redirectUri: location.origin + location.pathname,
  });
}

/** The connected client after the redirect back (or of the session), or null when signed out.
 * Opened by an EHR (`launch` and `iss` in the URL), it asks for `scope` plus `launch`. */
export async function connect(scope) {
  const params = new URLSearchParams(location.search);
  if (params.has("launch") && params.has("iss")) {
    await window.FHIR.oauth2.authorize({ clientId: CLIENT_ID, scope: `launch ${scope}`, redirectUri: location.origin + location.pathname });
    return null;
  }
  const hasSession = Object.keys(sessionStorage).some((k) => k === "SMART_KEY");
  if (!params.has("code") && !params.has("error") && !hasSession) return null;
  const client = await window.FHIR.oauth2.ready();
  if (params.has("code")) history.replaceState(null, "", location.pathname);
  return client;
}

/** Every resource of a search, all pages, as a flat list. */
export async function searchAll(client, query) {
  const found = await client.request(query, { pageLimit: 0, flat: true });
  return Array.isArray(found) ? found : [];
}

const WORDS = {
  "slot-unavailable": "someone else has just taken this time. Please choose another one.",
  "outside-availability": "this time is no longer offered. Please choose another one.",
  "patient-conflict": "you already have an appointment at that time.",
};
/** The words of a FHIR error (an OperationOutcome's diagnostics), for people. */
export function problemText(error) {
  const message = (error && error.message) || String(error);
  const start = message.indexOf("{");
  if (start >= 0) {
    try {
      const outcome = JSON.parse(message.slice(start));
      const issue = outcome.issue && outcome.issue[0];
      const code = issue && issue.details && (issue.details.coding || [])[0];
      if (code && WORDS[code.code]) return WORDS[code.code];
      if (issue && issue.diagnostics) return issue.diagnostics;
    } catch (_) { /* not an OperationOutcome */ }
  }
  return message.split("\n")[0];
}
