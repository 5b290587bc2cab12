"""Diagnostics of an export: which of its ops a GPU can run, and where each op ran in a traced call."""
