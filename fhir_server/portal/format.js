// How the portal shows FHIR values to people: times in the appointment's own time zone,
// names, statuses in words.
const TZ_URL = "http://hl7.org/fhir/StructureDefinition/timezone";
const STATES = {
  booked: "Booked", cancelled: "Cancelled", pending: "Held for you", proposed: "Proposed",
  waitlist: "On the waiting list", arrived: "Arrived", fulfilled: "Attended",
  noshow: "Missed", "checked-in": "Checked in", "entered-in-error": "Entered in error",
};

export function stateWord(status) { return STATES[status] || status; }

/** The IANA zone of a resource's standard timezone extension, or undefined. */
export function zoneOf(resource) {
  const ext = ((resource && resource.extension) || []).find((e) => e.url === TZ_URL);
  return ext ? ext.valueCode : undefined;
}

/** "Monday, December 7, 2026 at 09:00 EST" in `zone` (the browser's when undefined). */
export function when(instant, zone) {
  const options = { weekday: "long", day: "numeric", month: "long", year: "numeric",
    hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZoneName: "short", timeZone: zone };
  try { return new Intl.DateTimeFormat("en-US", options).format(new Date(instant)); }
  catch (_) { return new Intl.DateTimeFormat("en-US", { ...options, timeZone: undefined }).format(new Date(instant)); }
}

/** A person's or place's name for people. */
export function nameOf(resource) {
  if (!resource) return "";
  if (typeof resource.name === "string") return resource.name;
  const name = (resource.name || [])[0];
  if (!name) return "";
  if (name.text) return name.text;
  return [...(name.prefix || []), ...(name.given || []), name.family].filter(Boolean).join(" ");
}

/** Make an element: el("li", {class: "x"}, "text", child). */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) node.append(child);
  }
  return node;
}
