"""FHIR R4 Subscriptions (R4 `subscription.html`): criteria, write rules, the dispatcher that
delivers from the event log (ARCHITECTURE.md "Events and background work") and its channels."""
