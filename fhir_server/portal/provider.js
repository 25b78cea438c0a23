// The provider schedule (/portal/provider/): a practitioner's day (free, held, booked and
// blocked time), time off as busy-unavailable Slots, and checking patients in (arrived,
// fulfilled, no-show). A SMART app of this server with user/ scopes (smart.js).
import { el, nameOf, stateWord, when, zoneOf } from "./format.js";
import { connect, problemText, searchAll, signIn } from "./smart.js";
import { dayWindow } from "./book.js";

const SCOPE = [
  "openid fhirUser",
  "user/Appointment.cruds user/Slot.cruds user/Schedule.rs user/Patient.rs",
  "user/Practitioner.rs user/PractitionerRole.rus user/Location.rs",
  "user/Coverage.rs user/PaymentReconciliation.crs",
].join(" ");
const FHIR_JSON = { "Content-Type": "application/fhir+json" };
const $ = (id) => document.getElementById(id);
let client;
let roles = [];

function say(text) { $("status").textContent = text; }
function problem(text) { $("problem").textContent = text; $("problem").hidden = !text; }
function show(id) {
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.id !== id;
}

async function loadRoles() {
  const found = await searchAll(client, "PractitionerRole?_include=PractitionerRole:practitioner&_include=PractitionerRole:location&_count=200");
  const byRef = new Map(found.map((r) => [`${r.resourceType}/${r.id}`, r]));
  roles = found.filter((r) => r.resourceType === "PractitionerRole").map((role) => {
    const place = byRef.get(((role.location || [])[0] || {}).reference);
    return { id: role.id, name: nameOf(byRef.get((role.practitioner || {}).reference)) || role.id,
      zone: zoneOf(role) || zoneOf(place) || Intl.DateTimeFormat().resolvedOptions().timeZone };
  }).sort((a, b) => a.name.localeCompare(b.name));
  $("practitioner").replaceChildren(...roles.map((r) => el("option", { value: r.id }, r.name)));
  const me = client.getFhirUser && client.getFhirUser();
  const mine = found.find((r) => r.resourceType === "PractitionerRole" && me && r.practitioner && r.practitioner.reference === me);
  if (mine) $("practitioner").value = mine.id;
}

/** "09:00" in `zone`. */
function time(instant, zone) { return (when(instant, zone).split(" at ")[1] || instant).split(" ")[0]; }

async function setStatus(id, status) {
  problem("");
  try {
    const current = await client.request(`Appointment/${id}`);
    await client.request({ url: `Appointment/${id}`, method: "PUT", headers: { ...FHIR_JSON, "If-Match": `W/"${current.meta.versionId}"` },
      body: JSON.stringify({ ...current, status }) });
    await showDay();
    say(`Marked ${stateWord(status)}.`);
  } catch (error) { problem(problemText(error)); }
}

/** A practitioner's free, held, booked and blocked time in [start, end), by start; with
 * `copays`, each visit's copay too. */
async function itemsOf(role, start, end, copays) {
  const window = `start=${encodeURIComponent(start)}&end=${encodeURIComponent(end)}`;
  const range = (p) => `${p}=ge${encodeURIComponent(start)}&${p}=lt${encodeURIComponent(end)}`;
  const schedules = await searchAll(client, `Schedule?actor=PractitionerRole/${role.id}`);
  const items = [];
  for (const schedule of schedules) {
    const free = await client.request(`Schedule/${schedule.id}/$find-slots?${window}&_count=1000`);
    for (const e of free.entry || []) {
      if (e.resource.resourceType === "Slot") items.push({ start: e.resource.start, end: e.resource.end, kind: "Free", text: "", slot: e.resource });
    }
    const blocks = await searchAll(client, `Slot?schedule=Schedule/${schedule.id}&${range("start")}&status=busy-unavailable,busy,busy-tentative&_count=200`);
    for (const slot of blocks) items.push({ start: slot.start, end: slot.end, kind: "Blocked", text: slot.comment || "Time off" });
  }
  const found = await searchAll(client, `Appointment?actor=PractitionerRole/${role.id}&${range("date")}&_include=Appointment:patient&_count=500`);
  const people = new Map(found.filter((r) => r.resourceType === "Patient").map((p) => [`Patient/${p.id}`, p]));
  for (const a of found.filter((r) => r.resourceType === "Appointment" && r.status !== "cancelled")) {
    const patientRef = (a.participant || []).map((p) => p.actor && p.actor.reference).find((r) => r && r.startsWith("Patient/"));
    const kind = a.status === "pending" ? "Held" : stateWord(a.status);
    const copay = copays && ["booked", "arrived", "fulfilled"].includes(a.status) ? await copayOf(a, patientRef) : null;
    items.push({ start: a.start, end: a.end, kind, text: nameOf(people.get(patientRef)) || patientRef || "", appointment: a, copay });
  }
  return items.sort((a, b) => Date.parse(a.start) - Date.parse(b.start));
}

function summary(item, role) {
  return [el("div", { class: "when" }, `${time(item.start, role.zone)}–${time(item.end, role.zone)}`),
    el("div", {}, el("span", { class: "state" }, item.kind), item.text ? ` ${item.text}` : "")];
}

function viewing(which) {
  $("day").hidden = which !== "day";
  $("week").hidden = which !== "week";
}

/** The practitioners chosen (one or several; the first one's time off and hours are edited). */
function chosenRoles() {
  const ids = [...$("practitioner").selectedOptions].map((option) => option.value);
  return roles.filter((r) => ids.includes(r.id));
}

function dayList(role, items) {
  const list = el("ul", { class: "appointments" }, ...items.map((item) => {
    const actions = item.appointment && ["booked", "arrived"].includes(item.appointment.status)
      ? el("div", { class: "row-actions" }, ...["arrived", "fulfilled", "noshow"].filter((s) => s !== item.appointment.status)
        .map((s) => el("button", { type: "button", class: "secondary", onclick: () => setStatus(item.appointment.id, s) },
          { arrived: "Arrived", fulfilled: "Fulfilled", noshow: "No-show" }[s])))
      : null;
    const book = item.kind === "Free"
      ? el("div", { class: "row-actions" }, el("button", { type: "button", class: "secondary",
        onclick: () => chooseSlot(item, role) }, "Book for a patient"))
      : null;
    const copay = item.copay
      ? el("div", { class: "copay" }, `Copay ${money(item.copay.amount)}: ${item.copay.paid ? "paid" : "due"}`,
        item.copay.paid ? null : el("button", { type: "button", class: "secondary",
          onclick: () => recordCopay(item.appointment, item.copay.amount) }, "Record copay paid"))
      : null;
    return el("li", { "data-kind": item.kind }, ...summary(item, role), copay, actions || book);
  }));
  if (!items.length) list.append(el("li", { class: "muted" }, "Nothing on this day."));
  return list;
}

/** The chosen practitioners' day: free, held, booked and blocked time, by start, each in
 * their clinic's zone. */
async function showDay() {
  const chosen = chosenRoles();
  const date = $("date").value;
  if (!chosen.length || !date) return;
  say("Loading the day…");
  const sections = [];
  for (const role of chosen) {
    const { start, end } = dayWindow(date, role.zone);
    const items = await itemsOf(role, start, end, true);
    sections.push(el("section", { "aria-label": role.name, "data-role": role.id },
      el("h3", {}, `${role.name} (${role.zone})`), dayList(role, items)));
  }
  viewing("day");
  $("day-title").textContent = when(`${date}T12:00:00Z`, chosen[0].zone).split(" at ")[0];
  $("day").replaceChildren(...sections);
  say("");
}

/** The week (Monday to Sunday) of the chosen date, day by day, for each chosen practitioner. */
async function showWeek() {
  const chosen = chosenRoles();
  const date = $("date").value;
  if (!chosen.length || !date) return;
  say("Loading the week…");
  const noon = new Date(`${date}T12:00:00Z`);
  noon.setUTCDate(noon.getUTCDate() - ((noon.getUTCDay() + 6) % 7));
  const days = [...Array(7).keys()].map((n) => {
    const d = new Date(noon); d.setUTCDate(noon.getUTCDate() + n); return d.toISOString().slice(0, 10);
  });
  const blocks = [];
  for (const role of chosen) {
    const items = await itemsOf(role, dayWindow(days[0], role.zone).start, dayWindow(days[6], role.zone).end, false);
    const local = (instant) => new Intl.DateTimeFormat("en-CA", { timeZone: role.zone }).format(new Date(instant));
    blocks.push(el("h3", {}, `${role.name} (${role.zone})`), ...days.map((day) => {
      const mine = items.filter((item) => local(item.start) === day);
      const list = el("ul", { class: "appointments" }, ...mine.map((item) => el("li", { "data-kind": item.kind }, ...summary(item, role))));
      if (!mine.length) list.append(el("li", { class: "muted" }, "Nothing on this day."));
      const name = when(`${day}T12:00:00Z`, role.zone).split(" at ")[0];
      return el("section", { "aria-label": chosen.length > 1 ? `${role.name}, ${name}` : name, "data-role": role.id },
        el("h4", {}, name), list);
    }));
  }
  viewing("week");
  $("day-title").textContent = `The week of ${when(`${days[0]}T12:00:00Z`, chosen[0].zone).split(" at ")[0]}`;
  $("week").replaceChildren(...blocks);
  say("");
}

let chosenSlot = null;

/** Staff book a free time for a patient: find them by family name and/or birth date. */
function chooseSlot(item, role) {
  chosenSlot = item.slot;
  $("book-for-title").textContent = `Book ${time(item.start, role.zone)}–${time(item.end, role.zone)} for a patient`;
  $("book-for").hidden = false;
  $("patients").replaceChildren();
  $("family").focus();
}

async function findPatients(event) {
  event.preventDefault();
  problem("");
  const query = new URLSearchParams({ _count: "20" });
  if ($("family").value) query.append("family", $("family").value);
  if ($("birthdate").value) query.append("birthdate", $("birthdate").value);
  if (!$("family").value && !$("birthdate").value) { problem("Give a family name or a birth date."); return; }
  const found = await searchAll(client, `Patient?${query}`);
  $("patients").replaceChildren(...found.map((patient) => el("li", {},
    el("div", {}, `${nameOf(patient)} (born ${patient.birthDate || "?"})`),
    el("div", { class: "row-actions" }, el("button", { type: "button", onclick: () => bookFor(patient) }, `Book for ${nameOf(patient)}`)))));
  if (!found.length) $("patients").append(el("li", { class: "muted" }, "No patient found."));
}

async function bookFor(patient) {
  problem("");
  const resource = { resourceType: "Appointment", status: "proposed", slot: [{ reference: `Slot/${chosenSlot.id}` }],
    participant: [{ actor: { reference: `Patient/${patient.id}` }, status: "accepted" }] };
  try {
    await client.request({ url: "Appointment/$book", method: "POST", headers: FHIR_JSON,
      body: JSON.stringify({ resourceType: "Parameters", parameter: [{ name: "appointment-resource", resource }] }) });
    $("book-for").hidden = true;
    await showDay();
    say(`Booked for ${nameOf(patient)}.`);
  } catch (error) { problem(`The booking could not be made: ${problemText(error)}`); }
}

const DAY_NAMES = { mon: "Monday", tue: "Tuesday", wed: "Wednesday", thu: "Thursday", fri: "Friday", sat: "Saturday", sun: "Sunday" };
let hours = [];

/** The chosen practitioner's weekly hours (PractitionerRole.availableTime), as edited. */
async function showHours() {
  const role = await client.request(`PractitionerRole/${$("practitioner").value}`);
  hours = role.availableTime || [];
  renderHours();
}

function renderHours() {
  $("hours").replaceChildren(...hours.map((rule, n) => el("li", {},
    el("span", {}, `${(rule.daysOfWeek || []).map((d) => DAY_NAMES[d]).join(", ")}: `
      + (rule.allDay ? "all day" : `${(rule.availableStartTime || "").slice(0, 5)}–${(rule.availableEndTime || "").slice(0, 5)}`)),
    el("div", { class: "row-actions" }, el("button", { type: "button", class: "secondary",
      onclick: () => { hours.splice(n, 1); renderHours(); } }, "Remove")))));
  if (!hours.length) $("hours").append(el("li", { class: "muted" }, "No weekly hours."));
}

function addHours(event) {
  event.preventDefault();
  const days = [...document.querySelectorAll('#hours-form input[name="day"]:checked')].map((box) => box.value);
  if (!days.length) { problem("Choose at least one day."); return; }
  if ($("opens").value >= $("closes").value) { problem("The hours must close after they open."); return; }
  problem("");
  hours.push({ daysOfWeek: days, availableStartTime: `${$("opens").value}:00`, availableEndTime: `${$("closes").value}:00` });
  renderHours();
}

async function saveHours() {
  problem("");
  try {
    const role = await client.request(`PractitionerRole/${$("practitioner").value}`);
    const changed = { ...role, availableTime: hours };
    if (!hours.length) delete changed.availableTime;
    await client.request({ url: `PractitionerRole/${role.id}`, method: "PUT",
      headers: { ...FHIR_JSON, "If-Match": `W/"${role.meta.versionId}"` }, body: JSON.stringify(changed) });
    await showDay();
    say("Weekly hours saved.");
  } catch (error) { problem(`The hours could not be saved: ${problemText(error)}`); }
}

const COPAY_SYSTEM = "urn:fhir-scheduling-server:copay";
const money = (m) => new Intl.NumberFormat("en-US", { style: "currency", currency: m.currency || "USD" }).format(m.value);

/** A visit's copay: due from the patient's active Coverage (costToBeneficiary), paid when a
 * PaymentReconciliation with identifier COPAY_SYSTEM|{appointment id} exists. */
async function copayOf(appointment, patientRef) {
  if (!patientRef) return null;
  const coverages = await searchAll(client, `Coverage?beneficiary=${patientRef}&status=active`);
  const cost = coverages.flatMap((c) => c.costToBeneficiary || []).find((c) => c.valueMoney);
  if (!cost) return null;
  const paid = await searchAll(client, `PaymentReconciliation?identifier=${encodeURIComponent(`${COPAY_SYSTEM}|${appointment.id}`)}`);
  return { amount: cost.valueMoney, paid: paid.length > 0 };
}

async function recordCopay(appointment, amount) {
  problem("");
  const now = new Date().toISOString();
  const payment = { resourceType: "PaymentReconciliation", status: "active",
    identifier: [{ system: COPAY_SYSTEM, value: appointment.id }], created: now, paymentDate: now.slice(0, 10),
    paymentAmount: amount, disposition: "Copay paid at the front desk",
    detail: [{ type: { coding: [{ system: "http://terminology.hl7.org/CodeSystem/payment-type", code: "payment" }] },
      request: { reference: `Appointment/${appointment.id}` }, amount }] };
  try {
    await client.request({ url: "PaymentReconciliation", method: "POST",
      headers: { ...FHIR_JSON, "If-None-Exist": `identifier=${COPAY_SYSTEM}|${appointment.id}` }, body: JSON.stringify(payment) });
    await showDay();
    say(`Copay of ${money(amount)} recorded as paid.`);
  } catch (error) { problem(`The payment could not be recorded: ${problemText(error)}`); }
}

async function addTimeOff(event) {
  event.preventDefault();
  problem("");
  const role = roles.find((r) => r.id === $("practitioner").value);
  const date = $("date").value;
  const schedules = await searchAll(client, `Schedule?actor=PractitionerRole/${role.id}`);
  if (!schedules.length) { problem("This practitioner has no schedule."); return; }
  const { offset } = dayWindow(date, role.zone);
  const slot = { resourceType: "Slot", schedule: { reference: `Schedule/${schedules[0].id}` }, status: "busy-unavailable",
    start: `${date}T${$("from").value}:00${offset}`, end: `${date}T${$("to").value}:00${offset}`,
    comment: $("reason").value || "Time off" };
  try {
    await client.request({ url: "Slot", method: "POST", headers: FHIR_JSON, body: JSON.stringify(slot) });
    await showDay();
    say("Time off added.");
  } catch (error) { problem(`The time off could not be added: ${problemText(error)}`); }
}

async function main() {
  $("sign-in").addEventListener("click", () => signIn(SCOPE));
  try { client = await connect(SCOPE); } catch (error) { show("welcome"); problem(problemText(error)); return; }
  if (!client) { show("welcome"); return; }
  show("home");
  $("day-form").addEventListener("submit", (event) => { event.preventDefault(); showDay().catch((e) => problem(problemText(e))); });
  $("off-form").addEventListener("submit", (event) => addTimeOff(event).catch((e) => problem(problemText(e))));
  $("hours-form").addEventListener("submit", addHours);
  $("show-week").addEventListener("click", () => showWeek().catch((e) => problem(problemText(e))));
  $("save-hours").addEventListener("click", () => saveHours());
  $("practitioner").addEventListener("change", () => showHours().catch((e) => problem(problemText(e))));
  $("patient-search").addEventListener("submit", (event) => findPatients(event).catch((e) => problem(problemText(e))));
  try {
    const user = await client.user.read();
    $("who").textContent = nameOf(user);
    await loadRoles();
    if (!$("date").value) $("date").value = new Date().toISOString().slice(0, 10);
    await showDay();
    await showHours();
  } catch (error) { problem(problemText(error)); }
}

main();
