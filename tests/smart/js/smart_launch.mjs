// A SMART standalone launch by the JS `fhirclient` library (Node API), in two steps that share
// a session stored in a JSON file, the way a web app's server would between two requests:
//
//   node smart_launch.mjs authorize <session.json> '<json options>'
//       runs smart.authorize({..., noRedirect: true}) as if handling GET /launch and prints
//       {"authorizeUrl": ..., "state": <what the library stored>} on one line;
//   node smart_launch.mjs ready <session.json> '<callback url>' '<json request>'
//       runs smart.ready() as if handling GET <callback url>, then reads the in-context
//       Patient, runs Appointment/$find and books the first proposal with Appointment/$book,
//       and prints {"patientId", "patient", "proposal", "booked", "tokenResponse"} on one line.
//
// `fhirclient` is loaded from $FHIRCLIENT_PREFIX/node_modules (installed outside the
// repository by tests/smart/test_fhirclient_js.py). Errors go to stderr with exit code 1.

import { readFileSync, writeFileSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const prefix = process.env.FHIRCLIENT_PREFIX;
if (!prefix) {
  throw new Error("FHIRCLIENT_PREFIX must name the folder where fhirclient is installed");
}
const require = createRequire(join(prefix, "package.json"));
const smart = require("fhirclient");

/** A fhirclient storage (get/set/unset, async) kept in a JSON file between the two steps. */
function fileStorage(path) {
  const load = () => (existsSync(path) ? JSON.parse(readFileSync(path, "utf8")) : {});
  const save = (data) => writeFileSync(path, JSON.stringify(data, null, 2));
  return {
    async get(key) {
      return load()[key];
    },
    async set(key, value) {
      const data = load();
      data[key] = value;
      save(data);
      return value;
    },
    async unset(key) {
      const data = load();
      if (!Object.prototype.hasOwnProperty.call(data, key)) return false;
      delete data[key];
      save(data);
      return true;
    },
  };
}

/** The parts of a Node http request/response that NodeAdapter uses, for the app at `url`. */
function exchange(url) {
  const parsed = new URL(url);
  const request = {
    url: parsed.pathname + parsed.search,
    headers: { host: parsed.host },
    socket: { encrypted: parsed.protocol === "https:" },
    session: {},
  };
  const response = {
    writeHead(status, headers) {
      throw new Error(`unexpected redirect ${status} ${JSON.stringify(headers)}`);
    },
    end() {},
  };
  return { request, response };
}

async function authorize(sessionFile, options) {
  const { request, response } = exchange(new URL("/launch", options.redirectUri).href);
  const storage = fileStorage(sessionFile);
  const api = smart(request, response, storage);
  const authorizeUrl = await api.authorize({
    iss: options.iss,
    clientId: options.clientId,
    redirectUri: options.redirectUri,
    scope: options.scope,
    noRedirect: true,
  });
  const key = await storage.get("SMART_KEY");
  return { authorizeUrl, key, state: await storage.get(key) };
}

async function ready(sessionFile, callbackUrl, work) {
  const { request, response } = exchange(callbackUrl);
  const client = await smart(request, response, fileStorage(sessionFile)).ready();
  const patientId = client.patient.id;
  const patient = await client.patient.read();
  const query = new URLSearchParams(work.find).toString();
  const found = await client.request(`Appointment/$find?${query}`);
  const proposal = found.entry[0].resource;
  const parameters = {
    resourceType: "Parameters",
    parameter: [
      {
        name: "appointment-reference",
        valueReference: { reference: `Appointment/${proposal.id}` },
      },
    ],
  };
  const booked = await client.request({
    url: "Appointment/$book",
    method: "POST",
    body: JSON.stringify(parameters),
    headers: { "content-type": "application/fhir+json" },
  });
  const { access_token, refresh_token, id_token, ...tokenResponse } = client.state.tokenResponse;
  return {
    patientId,
    patient,
    proposal,
    booked,
    fhirUser: client.user.fhirUser,
    tokenResponse: {
      ...tokenResponse,
      hasAccessToken: Boolean(access_token),
      hasRefreshToken: Boolean(refresh_token),
      hasIdToken: Boolean(id_token),
    },
  };
}

async function main() {
  const [step, sessionFile, ...rest] = process.argv.slice(2);
  let result;
  if (step === "authorize") {
    result = await authorize(sessionFile, JSON.parse(rest[0]));
  } else if (step === "ready") {
    result = await ready(sessionFile, rest[0], JSON.parse(rest[1]));
  } else {
    throw new Error(`unknown step ${step}; use authorize or ready`);
  }
  process.stdout.write(JSON.stringify(result) + "\n");
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  if (error.response) process.stderr.write(`HTTP status ${error.status}\n`);
  process.exitCode = 1;
});
