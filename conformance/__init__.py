"""Conformance resources: the CapabilityStatement, OperationDefinitions, .well-known documents."""
