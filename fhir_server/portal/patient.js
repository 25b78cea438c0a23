// The patient portal (/portal/): sign in, "My appointments". A SMART app of this server that
// uses only the public FHIR API (smart.js).
import { connect, problemText, searchAll, signIn } from "./smart.js";
import { el, nameOf, stateWord, when, zoneOf } from "./format.js";

const SCOPE = "openid fhirUser launch/patient patient/*.cruds";
const $ = (id) => document.getElementById(id);

function show(id) {
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.id !== id;
}

function say(text) { $("status").textContent = text; }

function problem(text) {
  $("problem").textContent = text;
  $("problem").hidden = !text;
}

/** The people and places of an Appointment, from the included actors. */
function actorsOf(appointment, included) {
  const out = { who: "", where: "", zone: undefined };
  for (const participant of appointment.participant || []) {
    const ref = participant.actor && participant.actor.reference;
    if (!ref || ref.startsWith("Patient/")) continue;
    const actor = included.get(ref);
    const display = participant.actor.display;
    if (ref.startsWith("Location/")) out.where = out.where || display || nameOf(actor);
    else out.who = out.who || display || nameOf(actor) || nameOf(included.get((actor && actor.practitioner && actor.practitioner.reference) || ""));
    out.zone = out.zone || zoneOf(actor);
    if (actor && actor.location && !out.where) {
      const place = included.get(actor.location[0] && actor.location[0].reference);
      out.where = nameOf(place) || (actor.location[0] && actor.location[0].display) || "";
      out.zone = out.zone || zoneOf(place);
    }
  }
  return out;
}

function row(appointment, included) {
  const { who, where, zone } = actorsOf(appointment, included);
  const time = appointment.start ? when(appointment.start, zone) : "Any suitable time";
  return el("li", { "data-id": appointment.id },
    el("div", { class: "when" }, time),
    el("div", {}, [who, where].filter(Boolean).join(", ")),
    el("div", {}, el("span", { class: "state" }, stateWord(appointment.status))));
}

async function showAppointments(client) {
  say("Loading your appointments…");
  const patient = client.getPatientId();
  const found = await searchAll(client,
    `Appointment?patient=Patient/${encodeURIComponent(patient)}&_include=Appointment:actor&_count=100`);
  const included = new Map();
  for (const resource of found) included.set(`${resource.resourceType}/${resource.id}`, resource);
  const roles = found.filter((r) => r.resourceType === "PractitionerRole");
  const more = roles.flatMap((r) => [r.practitioner, ...(r.location || [])]).filter((x) => x && x.reference && !included.has(x.reference));
  for (const ref of more) {
    try { included.set(ref.reference, await client.request(ref.reference)); } catch (_) { /* unnamed */ }
  }
  const appointments = found.filter((r) => r.resourceType === "Appointment");
  const now = Date.now();
  const upcoming = appointments.filter((a) => !a.start || Date.parse(a.end || a.start) >= now)
    .sort((a, b) => (a.start || "").localeCompare(b.start || ""));
  const past = appointments.filter((a) => a.start && Date.parse(a.end || a.start) < now)
    .sort((a, b) => b.start.localeCompare(a.start));
  $("upcoming").replaceChildren(...upcoming.map((a) => row(a, included)));
  $("past").replaceChildren(...past.map((a) => row(a, included)));
  if (!upcoming.length) $("upcoming").append(el("li", { class: "muted" }, "No upcoming appointments."));
  if (!past.length) $("past").append(el("li", { class: "muted" }, "No past appointments."));
  say("");
}

async function main() {
  $("sign-in").addEventListener("click", () => signIn(SCOPE));
  let client;
  try {
    client = await connect();
  } catch (error) {
    show("welcome");
    problem(`Signing in did not work: ${problemText(error)}`);
    return;
  }
  if (!client) { show("welcome"); return; }
  show("home");
  try {
    const me = await client.patient.read();
    $("who").textContent = nameOf(me);
    await showAppointments(client);
  } catch (error) {
    problem(problemText(error));
  }
}

main();
