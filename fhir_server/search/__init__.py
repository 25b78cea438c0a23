"""FHIR search: parse a query into a typed SearchRequest; engines compile it in `storage/`."""
