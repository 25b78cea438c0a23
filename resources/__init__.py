"""FHIR knowledge with no I/O: served types, validation, search definitions, index extraction.

This package is the bottom layer: it imports no web framework and no database driver.
"""
