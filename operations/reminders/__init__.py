"""Appointment reminders as FHIR resources: a CommunicationRequest per configured offset for
each booked Appointment's Patient, sent by email or SMS when due, each attempt recorded as a
Communication (seed requirement: every reminder sent within 30 minutes of its trigger time)."""
