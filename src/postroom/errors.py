"""The one tree of Postroom errors and the one place that turns them into Lettr error bodies.

::

    PostroomError                      status  body
    ├── ApiKeyRequired                 401     {"message": "API key is required."}
    ├── InvalidApiKey                  401     {"message": "Invalid API key."}           (unknown, revoked, expired)
    ├── IpNotAllowed                   403     {"message": "Access denied. Your IP address is not allowed."}
    ├── InsufficientScope              403     {"message": ..., "error_code": "insufficient_scope"}
    ├── TooManyAuthFailures            429     {"message": ..., "error_code": "rate_limit_exceeded"} + Retry-After
    ├── RateLimitExceeded              429     {"message": ..., "error_code": "rate_limit_exceeded"} + Retry-After
    ├── UnconfiguredDomain             400     {"message": ..., "error_code": "unconfigured_domain"}
    ├── InvalidDomain                  400     {"message": ..., "error_code": "invalid_domain"}
    ├── IdempotencyConflict            409     {"message": ..., "error_code": "idempotency_key_conflict"}
    ├── IdempotencyInProgress          409     {"message": ..., "error_code": "idempotency_in_progress"} + Retry-After
    ├── ScheduleCancellationFailed     409     {"message": ..., "error_code": "schedule_cancellation_failed"}
    ├── ResourceAlreadyExists          409     {"message": ..., "error_code": "resource_already_exists"}
    ├── WebhookConflict                409     {"message": ..., "error_code": "webhook_conflict"}
    ├── MethodNotAllowed               405     {"message": "Method not allowed.", "error_code": "method_not_allowed"}
    ├── TransmissionFailed             502     {"message": ..., "error_code": "transmission_failed"}
    ├── DatabaseUnavailable            503     {"message": ..., "error_code": "service_unavailable"} + Retry-After
    ├── ValidationFailed               422     {"message": "Validation failed.", "error_code": ..., "errors": {...}}
    └── NotFound                       404     {"message": ..., "error_code": "not_found"}
        ├── EmailNotFound, ScheduledEmailNotFound, DomainNotFound, WebhookNotFound, WebhookDeliveryNotFound
        ├── ListNotFound, ContactNotFound, TopicNotFound, PropertyNotFound, SegmentNotFound,
        │   ContactOrListNotFound, ContactOrTopicNotFound
        ├── TemplateNotFound                   {"message": ..., "error_code": "template_not_found"}
        └── TemplateHtmlNotFound               {"success": false, "message": ...}   (GET /templates/html only)

401 bodies and the IP 403 carry no ``error_code``, exactly as Lettr answers them.
Services raise these; they never build responses themselves.
"""

from __future__ import annotations

from typing import Any, ClassVar


class PostroomError(Exception):
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "An unexpected error occurred. Please try again later."
    error_code: ClassVar[str | None] = "internal_error"

    def __init__(self, message: str | None = None, *, headers: dict[str, str] | None = None) -> None:
        self.message = message or self.default_message
        self.headers = headers or {}
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        """The Lettr error body for this error."""
        body: dict[str, Any] = {"message": self.message}
        if self.error_code is not None:
            body["error_code"] = self.error_code
        return body


class ApiKeyRequired(PostroomError):
    status = 401
    default_message = "API key is required."
    error_code = None


class InvalidApiKey(PostroomError):
    status = 401
    default_message = "Invalid API key."
    error_code = None


class IpNotAllowed(PostroomError):
    status = 403
    default_message = "Access denied. Your IP address is not allowed."
    error_code = None


class InsufficientScope(PostroomError):
    status = 403
    default_message = "Your API key does not have the required permissions for this action."
    error_code = "insufficient_scope"


class SandboxKeyNotAllowed(PostroomError):
    """A sandbox key may read and send (into the local inbox) but never change anything."""

    status = 403
    default_message = "Sandbox API keys cannot make changes. Use a live API key for this action."
    error_code = "sandbox_key_not_allowed"


class TooManyAuthFailures(PostroomError):
    status = 429
    default_message = "Too many failed authentication attempts from your IP address. Try again later."
    error_code = "rate_limit_exceeded"

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(headers={"Retry-After": str(max(1, retry_after_seconds))})
        self.retry_after_seconds = retry_after_seconds


class RateLimitExceeded(PostroomError):
    """A team sent more requests than its rate limit allows in the current window."""

    status = 429
    default_message = "Rate limit exceeded. Please slow down your requests."
    error_code = "rate_limit_exceeded"

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(headers={"Retry-After": str(max(1, retry_after_seconds))})
        self.retry_after_seconds = retry_after_seconds


class DatabaseUnavailable(PostroomError):
    """The database could not be reached or is out of connections: nothing was done, and a retry may succeed."""

    status = 503
    default_message = "The service is temporarily unavailable. Please try again shortly."
    error_code = "service_unavailable"

    def __init__(self) -> None:
        super().__init__(headers={"Retry-After": "1"})


class ValidationFailed(PostroomError):
    """Bad input; ``errors`` maps each field (dotted path or header name) to its messages."""

    status = 422
    default_message = "Validation failed."
    error_code = "validation_error"

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__()
        self.errors = errors

    def body(self) -> dict[str, Any]:
        return {**super().body(), "errors": self.errors}


class NotFound(PostroomError):
    status = 404
    default_message = "Not found."
    error_code = "not_found"


class MethodNotAllowed(PostroomError):
    status = 405
    default_message = "Method not allowed."
    error_code = "method_not_allowed"


class EmailNotFound(NotFound):
    default_message = "Email not found."


class ScheduledEmailNotFound(NotFound):
    default_message = "Scheduled transmission not found."


class DomainNotFound(NotFound):
    default_message = "Domain not found."


class TemplateNotFound(NotFound):
    """Also used, as Lettr does on the send route, for an unknown project."""

    error_code = "template_not_found"


class TemplateHtmlNotFound(NotFound):
    """``GET /templates/html`` answers its 404 in its own shape: ``{"success": false, "message"}``."""

    default_message = "Template not found."

    def body(self) -> dict[str, Any]:
        return {"success": False, "message": self.message}


class UnconfiguredDomain(PostroomError):
    status = 400
    default_message = "The sender domain is not configured or approved for sending."
    error_code = "unconfigured_domain"


class InvalidDomain(PostroomError):
    status = 400
    default_message = "The sender domain could not be determined from the email address."
    error_code = "invalid_domain"


class ResourceAlreadyExists(PostroomError):
    status = 409
    default_message = "This resource already exists."
    error_code = "resource_already_exists"


class IdempotencyConflict(PostroomError):
    status = 409
    default_message = "This Idempotency-Key was already used with a different request payload."
    error_code = "idempotency_key_conflict"


class IdempotencyInProgress(PostroomError):
    status = 409
    default_message = "A request with this Idempotency-Key is still processing."
    error_code = "idempotency_in_progress"

    def __init__(self, retry_after_seconds: int = 1) -> None:
        super().__init__(headers={"Retry-After": str(max(1, retry_after_seconds))})


class ScheduleCancellationFailed(PostroomError):
    status = 409
    error_code = "schedule_cancellation_failed"

    def __init__(self, scheduled_id: str) -> None:
        super().__init__(f"Failed to cancel scheduled transmission {scheduled_id}.")


class WebhookNotFound(NotFound):
    default_message = "Webhook not found."


class WebhookDeliveryNotFound(NotFound):
    default_message = "Webhook delivery not found."


class WebhookConflict(PostroomError):
    """A webhook operation the endpoint's current state does not allow (a rotation already open, disabled)."""

    status = 409
    error_code = "webhook_conflict"


class ListNotFound(NotFound):
    default_message = "List not found."


class ContactNotFound(NotFound):
    default_message = "Contact not found."


class TopicNotFound(NotFound):
    default_message = "Topic not found."


class PropertyNotFound(NotFound):
    default_message = "Property not found."


class SegmentNotFound(NotFound):
    default_message = "Segment not found."


class ContactOrListNotFound(NotFound):
    default_message = "Contact or list not found."


class ContactOrTopicNotFound(NotFound):
    default_message = "Contact or topic not found."


class TransmissionFailed(PostroomError):
    status = 502
    default_message = "The email could not be queued for delivery."
    error_code = "transmission_failed"
