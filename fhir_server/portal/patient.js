// The patient portal (/portal/): sign in, "My appointments". A SMART app of this server that
// uses only the public FHIR API (smart.js).
import { Booking } from "./book.js";
import { el, nameOf, stateWord, when, zoneOf } from "./format.js";
import { SCOPE } from "./patient-scope.js";
import { connect, problemText, searchAll, signIn } from "./smart.js";

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

let client;
let booking;
let notice = ""; // said once the list is shown

async function cancel(appointment) {
  problem("");
  say("Cancelling…");
  const resource = { resourceType: "Appointment", id: appointment.id, status: "cancelled",
    cancelationReason: { text: "Cancelled by the patient in the portal" } };
  try {
    await client.request({ url: "Appointment/$book", method: "POST", headers: { "Content-Type": "application/fhir+json" },
      body: JSON.stringify({ resourceType: "Parameters", parameter: [{ name: "appointment-resource", resource }] }) });
    notice = "Your appointment is cancelled.";
    await showAppointments(client);
  } catch (error) { say(""); problem(`It could not be cancelled: ${problemText(error)}`); }
}

function row(appointment, included, upcoming) {
  const { who, where, zone } = actorsOf(appointment, included);
  const period = (appointment.requestedPeriod || [])[0];
  const time = appointment.start ? when(appointment.start, zone)
    : period ? `Any time from ${when(period.start, zone)} to ${when(period.end, zone)}` : "Any suitable time";
  const actions = upcoming && appointment.status === "booked"
    ? el("div", { class: "row-actions" },
      el("button", { type: "button", class: "secondary", onclick: () => cancel(appointment),
        "aria-describedby": `when-${appointment.id}` }, "Cancel"),
      el("button", { type: "button", class: "secondary", "aria-describedby": `when-${appointment.id}`,
        onclick: () => { location.hash = `#reschedule/${appointment.id}`; } }, "Reschedule"))
    : null;
  const video = (appointment.supportingInformation || []).map((i) => included.get(i.reference))
    .find((r) => r && r.resourceType === "Endpoint" && r.address);
  const join = video && appointment.status === "booked" && upcoming
    ? el("p", {}, el("a", { href: video.address, target: "_blank", rel: "noopener" }, "Join the video visit"))
    : null;
  return el("li", { "data-id": appointment.id },
    el("div", { class: "when", id: `when-${appointment.id}` }, time),
    el("div", {}, [who, where].filter(Boolean).join(", ")),
    el("div", {}, el("span", { class: "state" }, stateWord(appointment.status))),
    join, actions);
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
  const endpoints = found.filter((r) => r.resourceType === "Appointment")
    .flatMap((a) => a.supportingInformation || []).filter((i) => (i.reference || "").startsWith("Endpoint/"));
  for (const ref of [...more, ...endpoints]) {
    try { included.set(ref.reference, await client.request(ref.reference)); } catch (_) { /* unnamed */ }
  }
  const appointments = found.filter((r) => r.resourceType === "Appointment");
  const now = Date.now();
  const upcoming = appointments.filter((a) => !a.start || Date.parse(a.end || a.start) >= now)
    .sort((a, b) => (a.start ? Date.parse(a.start) : Infinity) - (b.start ? Date.parse(b.start) : Infinity));
  const past = appointments.filter((a) => a.start && Date.parse(a.end || a.start) < now)
    .sort((a, b) => Date.parse(b.start) - Date.parse(a.start));
  $("upcoming").replaceChildren(...upcoming.map((a) => row(a, included, true)));
  $("past").replaceChildren(...past.map((a) => row(a, included, false)));
  if (!upcoming.length) $("upcoming").append(el("li", { class: "muted" }, "No upcoming appointments."));
  if (!past.length) $("past").append(el("li", { class: "muted" }, "No past appointments."));
  say(notice);
  notice = "";
}

async function route() {
  problem("");
  const hash = location.hash;
  if (hash === "#book" || hash.startsWith("#reschedule/")) {
    show("book");
    try { await booking.open(hash.startsWith("#reschedule/") ? hash.split("/")[1] : null); }
    catch (error) { problem(problemText(error)); }
    $("date").focus();
    return;
  }
  show("home");
  await showAppointments(client);
}

async function booked(appointment) {
  notice = appointment.status === "waitlist"
    ? "You are on the waiting list. We will write when a time frees up."
    : `Booked: ${when(appointment.start)}.`;
  if (location.hash) location.hash = ""; // the hashchange shows the list, then the notice
  else await route();
}

async function main() {
  $("sign-in").addEventListener("click", () => signIn(SCOPE));
  try {
    client = await connect(SCOPE);
  } catch (error) {
    show("welcome");
    problem(`Signing in did not work: ${problemText(error)}`);
    return;
  }
  if (!client && new URLSearchParams(location.search).has("signin")) { signIn(SCOPE); return; }
  if (!client) { show("welcome"); return; }
  booking = new Booking(client, booked, say, problem);
  window.addEventListener("hashchange", () => route().catch((error) => problem(problemText(error))));
  try {
    const me = await client.patient.read();
    $("who").textContent = nameOf(me);
    await route();
  } catch (error) {
    problem(problemText(error));
  }
}

main();
