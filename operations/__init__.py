"""FHIR operations, one module per OperationDefinition, and the scheduling engine they share."""
