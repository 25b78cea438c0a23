"""FHIR R4 scheduling server: the core (config, storage, search, bundles) and its edges."""
