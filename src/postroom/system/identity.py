"""Whether this server's mail identity is a name the rest of the world can check.

``POSTROOM_MAIL_HOSTNAME`` is the name in EHLO, in every Message-ID, in the bounce (return-path) address and, unless
``POSTROOM_SPF_INCLUDE``/``POSTROOM_SPF_IP`` say otherwise, in the SPF record customers publish. Unset, it is the
machine's FQDN, which on a fresh host is often ``localhost`` or a private name: mail then goes out under a name no
receiver can resolve, and the records customers publish point nowhere. The judgement is made from the name alone
(no DNS lookup at start): a public name has a registrable part under a suffix in the public suffix list's ICANN
section, so ``localhost``, single labels, ``.local``, ``.lan``, ``.internal``, ``.test``, ``home.arpa`` and IP
literals are not public names.
"""

from __future__ import annotations

from postroom.config import Settings
from postroom.domains.records import registrable_domain


def is_public_name(name: str) -> bool:
    """Whether ``name`` is a DNS name under a public suffix (not a reserved, local or special-use name)."""
    name = name.strip().rstrip(".").lower()
    if not name or name.endswith(".arpa"):
        return False
    return registrable_domain(name) is not None


def mail_identity_warning(settings: Settings) -> str | None:
    """What is wrong with the mail identity, in one sentence naming the setting; None when it is a public name."""
    name = settings.mail_hostname
    if not settings.mail_hostname_explicit:
        return (
            f"POSTROOM_MAIL_HOSTNAME is not set, so this server's mail identity is the machine's name {name!r}: "
            "HELO, Message-IDs, the bounce address and the SPF and return-path records customers publish all use "
            "it. Set POSTROOM_MAIL_HOSTNAME to this server's public DNS name."
        )
    if not is_public_name(name):
        return (
            f"POSTROOM_MAIL_HOSTNAME is {name!r}, which is not a public DNS name: HELO, Message-IDs, the bounce "
            "address and the SPF and return-path records customers publish all use it. Set it to this server's "
            "public DNS name."
        )
    return None


def config_warnings(settings: Settings) -> list[dict[str, str]]:
    """What readiness reports as ``warnings``: ``{"code", "message"}`` for each problem, [] when there is none."""
    warning = mail_identity_warning(settings)
    return [] if warning is None else [{"code": "mail_hostname", "message": warning}]
