"""Stored templates with versions, folders, and the merge-tag language they are written in."""
