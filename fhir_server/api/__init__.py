"""The HTTP edge: routers for REST interactions, bundles and operations; content negotiation;
OperationOutcome error handlers."""
