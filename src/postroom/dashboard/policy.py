"""Who may do what in the dashboard: roles, and the one table that says what every page and action requires.

Like ``ROUTE_SCOPES`` for the API, ``PAGE_ACCESS`` is the single place access is decided: the dashboard router
refuses to build if a route is missing from it or it names a route that does not exist, and the guard denies any
route without an entry. The role check runs on the server for every request; hiding a button is only courtesy.

- **viewer** reads emails, domains, templates, webhooks, logs and their own account;
- **developer** also manages API keys, domains, templates and webhooks;
- **admin** also manages members (never granting more than their own role) and reads the audit log;
- **owner** also changes team-wide security settings and may grant ownership. The last owner cannot leave.
"""

from __future__ import annotations

from enum import Enum, StrEnum
from typing import Final


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    DEVELOPER = "developer"
    VIEWER = "viewer"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def label(self) -> str:
        return self.value.capitalize()

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


_RANK = {Role.VIEWER: 0, Role.DEVELOPER: 1, Role.ADMIN: 2, Role.OWNER: 3}


class Stage(Enum):
    """What a request needs before any role applies."""

    PUBLIC = "public"
    """No session (sign-in, invitation and static pages)."""
    MFA = "mfa"
    """A session that has proved the password and still owes the second factor."""
    ENROL = "enrol"
    """A signed-in session, also one the team keeps on the 2FA set-up page until the user enrols."""


Access = Role | Stage

PAGE_ACCESS: Final[dict[tuple[str, str], Access]] = {
    ("GET", "/static/{file_path}"): Stage.PUBLIC,
    ("HEAD", "/static/{file_path}"): Stage.PUBLIC,
    ("GET", "/login"): Stage.PUBLIC,
    ("POST", "/login"): Stage.PUBLIC,
    ("GET", "/invite/{token}"): Stage.PUBLIC,
    ("POST", "/invite/{token}"): Stage.PUBLIC,
    ("GET", "/login/2fa"): Stage.MFA,
    ("POST", "/login/2fa"): Stage.MFA,
    ("POST", "/logout"): Stage.MFA,
    ("GET", "/account/2fa"): Stage.ENROL,
    ("POST", "/account/2fa/start"): Stage.ENROL,
    ("POST", "/account/2fa/confirm"): Stage.ENROL,
    ("GET", "/"): Role.VIEWER,
    ("GET", "/account"): Role.VIEWER,
    ("POST", "/account/password"): Role.VIEWER,
    ("POST", "/account/2fa/disable"): Role.VIEWER,
    ("POST", "/account/2fa/recovery-codes"): Role.VIEWER,
    ("POST", "/account/sessions/{session_id}/revoke"): Role.VIEWER,
    ("POST", "/account/sessions/revoke-others"): Role.VIEWER,
    ("GET", "/emails"): Role.VIEWER,
    ("GET", "/emails/{request_id}"): Role.VIEWER,
    ("GET", "/inbox"): Role.VIEWER,
    ("GET", "/inbox/{capture_id}"): Role.VIEWER,
    ("GET", "/inbox/{capture_id}/html"): Role.VIEWER,
    ("GET", "/domains"): Role.VIEWER,
    ("POST", "/domains"): Role.DEVELOPER,
    ("POST", "/domains/{name}/verify"): Role.DEVELOPER,
    ("GET", "/logs"): Role.VIEWER,
    ("GET", "/settings/api-keys"): Role.DEVELOPER,
    ("POST", "/settings/api-keys"): Role.DEVELOPER,
    ("GET", "/settings/api-keys/validate-ips"): Role.DEVELOPER,
    ("GET", "/settings/api-keys/{key_id}"): Role.DEVELOPER,
    ("POST", "/settings/api-keys/{key_id}"): Role.DEVELOPER,
    ("POST", "/settings/api-keys/{key_id}/rotate"): Role.DEVELOPER,
    ("POST", "/settings/api-keys/{key_id}/revoke"): Role.DEVELOPER,
    ("GET", "/team"): Role.VIEWER,
    ("POST", "/team/invitations"): Role.ADMIN,
    ("POST", "/team/invitations/{invitation_id}/revoke"): Role.ADMIN,
    ("POST", "/team/members/{user_id}/role"): Role.ADMIN,
    ("POST", "/team/members/{user_id}/remove"): Role.ADMIN,
    ("POST", "/team/settings"): Role.OWNER,
    ("GET", "/audit"): Role.ADMIN,
    ("GET", "/audit/export"): Role.ADMIN,
    ("GET", "/templates"): Role.VIEWER,
    ("GET", "/templates/{slug}"): Role.VIEWER,
    ("POST", "/templates/{slug}"): Role.DEVELOPER,
    ("GET", "/webhooks"): Role.VIEWER,
    ("GET", "/webhooks/{webhook_id}"): Role.VIEWER,
    ("POST", "/webhooks/{webhook_id}/deliveries/{delivery_id}/replay"): Role.DEVELOPER,
}
"""(method, path template) → what the request needs. The only place dashboard access is assigned."""


def permits(role: Role, access: Access) -> bool:
    """Whether a fully signed-in member with ``role`` may make a request that needs ``access``."""
    if isinstance(access, Stage):
        return True
    return role.at_least(access)
