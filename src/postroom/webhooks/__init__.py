"""Webhook endpoints: management, signing, and the retried, SSRF-safe delivery of email events."""
