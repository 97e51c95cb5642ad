"""Webhook endpoints: management, signing, and the retried, SSRF-safe delivery of email events.

``verify`` is the public helper receivers written in Python can use to check ``Lettr-Signature``.
"""

from postroom.webhooks.signing import verify

__all__ = ["verify"]
