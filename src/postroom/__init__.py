"""Postroom: a self-hosted transactional email platform that speaks the Lettr email API."""

__version__ = "0.1.0"
