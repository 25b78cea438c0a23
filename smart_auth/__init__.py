"""SMART App Launch 2.2 authorization server and scope enforcement (see shared/specs/SMART.md)."""
