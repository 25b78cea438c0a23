// What the patient portal asks for, and no more: the patient's appointments and details, and
// the clinic's practitioners, places, schedules and free times, and video visit links.
export const SCOPE = [
  "openid fhirUser launch/patient",
  "patient/Appointment.cruds patient/Patient.r",
  "patient/Practitioner.rs patient/PractitionerRole.rs patient/Location.rs",
  "patient/HealthcareService.rs patient/Schedule.rs patient/Slot.rs patient/Endpoint.r",
].join(" ");
