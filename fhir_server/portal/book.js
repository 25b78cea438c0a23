// Booking in the patient portal: choose a specialty or practitioner and a date, see the free
// times (Slot/$find-slots), confirm (Appointment/$hold, then $book); a reschedule books the new
// time and cancels the old one in one write ($book's cancelled-appt-id).
import { el, nameOf, when, zoneOf } from "./format.js";
import { problemText, searchAll } from "./smart.js";

const $ = (id) => document.getElementById(id);
const FHIR_JSON = { "Content-Type": "application/fhir+json" };

/** The UTC offset ("-05:00") of `zone` around noon of `date` (YYYY-MM-DD). */
function offsetOf(date, zone) {
  const noon = new Date(`${date}T12:00:00Z`);
  const name = new Intl.DateTimeFormat("en-US", { timeZone: zone, timeZoneName: "longOffset" })
    .formatToParts(noon).find((p) => p.type === "timeZoneName").value;
  const match = name.match(/GMT([+-]\d{2}):?(\d{2})?/);
  return match ? `${match[1]}:${match[2] || "00"}` : "+00:00";
}

/** The local day `date` in `zone`: `{start, end, offset}` as dateTimes with the offset. */
export function dayWindow(date, zone) {
  const offset = offsetOf(date, zone);
  return { start: `${date}T00:00:00${offset}`, end: `${nextDay(date)}T00:00:00${offset}`, offset };
}

function nextDay(date) {
  const d = new Date(`${date}T12:00:00Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().slice(0, 10);
}

async function post(client, url, parameters) {
  return client.request({ url, method: "POST", headers: FHIR_JSON, body: JSON.stringify({ resourceType: "Parameters", parameter: parameters }) });
}

export class Booking {
  constructor(client, onBooked, say, problem) {
    Object.assign(this, { client, onBooked, say, problem });
    this.roles = [];
    this.replacing = null;
    this.chosen = null;
    $("find-form").addEventListener("submit", (event) => { event.preventDefault(); this.find(); });
    $("waitlist-button").addEventListener("click", () => this.joinWaitlist());
    $("confirm-button").addEventListener("click", () => this.confirm());
  }

  /** Load the practitioners and specialties once; `replacing`: the Appointment to move. */
  async open(replacing = null) {
    this.replacing = replacing;
    $("book-title").textContent = replacing ? "Reschedule" : "Book an appointment";
    $("times").replaceChildren(); $("times-title").hidden = true; $("confirm").hidden = true;
    $("waitlist-offer").hidden = true;
    if (!$("date").value) $("date").value = nextDay(new Date().toISOString().slice(0, 10));
    if (this.roles.length) return;
    const found = await searchAll(this.client, "PractitionerRole?_include=PractitionerRole:practitioner&_include=PractitionerRole:location&_count=200");
    const byRef = new Map(found.map((r) => [`${r.resourceType}/${r.id}`, r]));
    this.roles = found.filter((r) => r.resourceType === "PractitionerRole" && r.active !== false).map((role) => {
      const person = byRef.get(role.practitioner && role.practitioner.reference);
      const place = byRef.get(((role.location || [])[0] || {}).reference);
      return { role, name: nameOf(person) || (role.practitioner && role.practitioner.display) || role.id,
        place: nameOf(place), zone: zoneOf(role) || zoneOf(place) };
    }).sort((a, b) => a.name.localeCompare(b.name));
    const specialties = new Map();
    for (const { role } of this.roles) {
      for (const concept of role.specialty || []) {
        for (const c of concept.coding || []) specialties.set(`${c.system}|${c.code}`, c.display || concept.text || c.code);
      }
    }
    $("specialty").append(...[...specialties].sort((a, b) => a[1].localeCompare(b[1])).map(([value, label]) => el("option", { value }, label)));
    $("practitioner").append(...this.roles.map((r) => el("option", { value: r.role.id }, r.place ? `${r.name} (${r.place})` : r.name)));
  }

  async find() {
    this.problem("");
    const date = $("date").value;
    const roleId = $("practitioner").value;
    const specialty = $("specialty").value;
    const chosen = this.roles.find((r) => r.role.id === roleId);
    const zone = (chosen && chosen.zone) || (this.roles.find((r) => r.zone) || {}).zone || Intl.DateTimeFormat().resolvedOptions().timeZone;
    const { start, end } = dayWindow(date, zone);
    this.window = { start, end };
    this.wanted = { roleId, specialty };
    const query = new URLSearchParams({ ...this.window, _count: "100" });
    if (roleId) query.append("actor", `PractitionerRole/${roleId}`);
    if (specialty) query.append("specialty", specialty);
    this.say("Looking for free times…");
    let slots;
    try {
      const bundle = await this.client.request(`Slot/$find-slots?${query}`);
      slots = (bundle.entry || []).map((e) => e.resource).filter((r) => r.resourceType === "Slot");
    } catch (error) { this.say(""); this.problem(problemText(error)); return; }
    $("times-title").hidden = false;
    $("confirm").hidden = true;
    $("times").replaceChildren(...slots.map((slot) => {
      const label = when(slot.start, zone);
      const button = el("button", { type: "button", class: "secondary", "aria-pressed": "false",
        onclick: () => this.pick(slot, label, button) }, label.split(" at ")[1] || label);
      button.setAttribute("aria-label", label);
      return el("li", {}, button);
    }));
    this.say(slots.length ? `${slots.length} free times on this day.` : "");
    $("waitlist-offer").hidden = !(roleId || specialty);
    if (!slots.length) $("times").append(el("li", { class: "muted" }, "No free times on this day. Try another date."));
  }

  /** Wait for a time on the chosen day with the chosen practitioner or specialty: a waitlist
   * entry ($book with status waitlist); freed time is offered by email or SMS. */
  async joinWaitlist() {
    this.problem("");
    const patient = `Patient/${this.client.getPatientId()}`;
    const entry = { resourceType: "Appointment", status: "waitlist", requestedPeriod: [this.window],
      participant: [{ actor: { reference: patient }, status: "accepted" }] };
    if (this.wanted.roleId) entry.participant.push({ actor: { reference: `PractitionerRole/${this.wanted.roleId}` }, status: "needs-action" });
    if (this.wanted.specialty) {
      const [system, code] = this.wanted.specialty.split("|");
      entry.specialty = [{ coding: [{ system, code }] }];
    }
    const parameters = [{ name: "appointment-resource", resource: entry }];
    if (this.replacing) parameters.push({ name: "cancelled-appt-id", valueReference: { reference: `Appointment/${this.replacing}` } });
    try {
      const joined = await post(this.client, "Appointment/$book", parameters);
      await this.onBooked(joined.entry[0].resource);
    } catch (error) { this.problem(`You could not join the waiting list: ${problemText(error)}`); }
  }

  pick(slot, label, button) {
    for (const other of document.querySelectorAll("#times button")) other.setAttribute("aria-pressed", "false");
    button.setAttribute("aria-pressed", "true");
    this.chosen = slot;
    $("confirm-text").textContent = this.replacing ? `Move your appointment to ${label}.` : `${label}.`;
    $("confirm").hidden = false;
    $("confirm-button").focus();
  }

  async confirm() {
    if (!this.chosen) return;
    this.problem("");
    const patient = `Patient/${this.client.getPatientId()}`;
    const proposed = { resourceType: "Appointment", status: "proposed",
      slot: [{ reference: `Slot/${this.chosen.id}` }],
      participant: [{ actor: { reference: patient }, status: "accepted" }] };
    $("confirm-button").disabled = true;
    this.say("Booking…");
    try {
      const held = await post(this.client, "Appointment/$hold", [{ name: "appointment-resource", resource: proposed }]);
      const hold = held.entry[0].resource;
      const parameters = [{ name: "appointment-reference", valueReference: { reference: `Appointment/${hold.id}` } }];
      if (this.replacing) parameters.push({ name: "cancelled-appt-id", valueReference: { reference: `Appointment/${this.replacing}` } });
      const booked = await post(this.client, "Appointment/$book", parameters);
      this.chosen = null;
      await this.onBooked(booked.entry[0].resource);
    } catch (error) {
      this.say("");
      this.problem(`That time could not be booked: ${problemText(error)}`);
    } finally {
      $("confirm-button").disabled = false;
    }
  }
}
