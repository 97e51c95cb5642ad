"""What an SMTP reply (or its absence) means for a recipient: retry later or give up, and how to report it.

``kind`` follows the basic reply code alone, because that is what the receiving server promised: 5xx means
"do not retry this", anything else (4xx, and the odd 2xx/3xx at the wrong moment) means "try again later".
The ``bounce_class`` is SparkPost's classification (the Lettr API reports it), chosen from the RFC 3463 enhanced
status code and the reply text by the first matching rule of ``_RULES``.

Only an invalid recipient (a mailbox or domain that does not exist or is disabled) suppresses the address.
Policy, authentication, reputation and content blocks (mostly 5.7.x) say something about the *sender*, so
suppressing the recipient would punish the wrong party; 4xx replies never suppress.

Bounce classes and the category each belongs to (SparkPost's own grouping; 80 Subscribe is not a failure):

==========  ======================================================================================
hard        10 Invalid Recipient, 30 Generic Bounce: No RCPT, 90 Unsubscribe
block       50 Mail Block, 51 Spam Block, 52 Spam Content, 53 Prohibited Attachment, 54 Relaying Denied
soft        20 Soft Bounce, 21 DNS Failure, 22 Mailbox Full, 23 Too Large, 24 Timeout, 40 Generic Bounce,
            60 Auto-Reply, 70 Transient Failure, 100 Challenge-Response
admin       25 Admin Failure (our own side: relay credentials, TLS requirements)
undetermined 1 Undetermined, 80 Subscribe
==========  ======================================================================================

Classes 30, 60, 80, 90 and 100 describe out-of-band messages (asynchronous bounces, replies), never an SMTP
reply, so this module does not produce them. A temporary reply never gets a hard class: where the rule would
say 10 (e.g. ``450 4.1.1 user unknown`` from a server whose directory is briefly unreachable) it becomes 20,
and "generic" or "undetermined" become 70 Transient Failure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class OutcomeKind(StrEnum):
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


class BounceCategory(StrEnum):
    HARD = "hard"
    BLOCK = "block"
    SOFT = "soft"
    ADMIN = "admin"
    UNDETERMINED = "undetermined"


@dataclass(frozen=True)
class Outcome:
    """One recipient's failed attempt. ``reason`` is a short human text, ``enhanced_status`` e.g. ``5.1.1``."""

    kind: OutcomeKind
    bounce_class: int
    suppress: bool
    enhanced_status: str | None
    reason: str
    code: int | None = None
    """The SMTP reply code, when there was a reply."""
    raw: str = ""
    """What the server said (``550 5.1.1 …``), or what went wrong without a reply."""


BOUNCE_CLASS_NAMES = MappingProxyType(
    {
        1: "Undetermined",
        10: "Invalid Recipient",
        20: "Soft Bounce",
        21: "DNS Failure",
        22: "Mailbox Full",
        23: "Too Large",
        24: "Timeout",
        25: "Admin Failure",
        30: "Generic Bounce: No RCPT",
        40: "Generic Bounce",
        50: "Mail Block",
        51: "Spam Block",
        52: "Spam Content",
        53: "Prohibited Attachment",
        54: "Relaying Denied",
        60: "Auto-Reply",
        70: "Transient Failure",
        80: "Subscribe",
        90: "Unsubscribe",
        100: "Challenge-Response",
    }
)
HARD_BOUNCE_CLASSES = frozenset({10, 30, 90})
BLOCK_BOUNCE_CLASSES = frozenset({50, 51, 52, 53, 54})
TEMPORARY_BOUNCE_CLASSES = frozenset({20, 21, 22, 23, 24, 40, 60, 70, 100})  # SparkPost's "soft" category
ADMIN_BOUNCE_CLASSES = frozenset({25})
UNDETERMINED_BOUNCE_CLASSES = frozenset({1, 80})


def bounce_category(bounce_class: int) -> BounceCategory:
    """SparkPost's category of a bounce class; an unknown class is a programming error."""
    for category, classes in (
        (BounceCategory.HARD, HARD_BOUNCE_CLASSES),
        (BounceCategory.BLOCK, BLOCK_BOUNCE_CLASSES),
        (BounceCategory.SOFT, TEMPORARY_BOUNCE_CLASSES),
        (BounceCategory.ADMIN, ADMIN_BOUNCE_CLASSES),
        (BounceCategory.UNDETERMINED, UNDETERMINED_BOUNCE_CLASSES),
    ):
        if bounce_class in classes:
            return category
    raise ValueError(f"{bounce_class} is not a bounce class")


def is_hard_bounce(bounce_class: int) -> bool:
    """Whether the class says the address itself is bad (10, 30, 90), so sending to it again is pointless."""
    return bounce_category(bounce_class) is BounceCategory.HARD


@dataclass(frozen=True)
class _Rule:
    """Matches when the enhanced status is one of ``statuses`` (if given) and the text matches ``text`` (if given).

    Statuses are written without the class digit, ``subject.detail`` ("1.1"), ``subject.*`` ("7.*"), or ""
    for "the reply has no enhanced status code", since 4.x.y and 5.x.y mean the same thing (RFC 3463 §2).
    """

    bounce_class: int
    reason: str
    statuses: frozenset[str] | None = None
    text: re.Pattern[str] | None = None

    def matches(self, status: tuple[str, str] | None, message: str) -> bool:
        if self.statuses is not None:
            keys = {""} if status is None else {f"{status[0]}.{status[1]}", f"{status[0]}.*"}
            if self.statuses.isdisjoint(keys):
                return False
        return self.text is None or self.text.search(message) is not None


def _s(*statuses: str) -> frozenset[str]:
    return frozenset(statuses)


def _t(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


# Statuses that say nothing specific (no code, x.0.0, "other mailbox/system/protocol status"): the text decides.
_VAGUE = _s("", "0.0", "2.0", "3.0", "5.0")
# Statuses under which a text about policy, spam or reputation is believed.
_POLICY = _VAGUE | _s("7.*", "6.*")

_INVALID_RECIPIENT_TEXT = (
    r"user unknown|unknown (?:user|recipient|mailbox|address)|no such (?:user|mailbox|recipient|address|account)"
    r"|(?:user|mailbox|recipient|address|account)(?:\s+\S+){0,6}?\s+(?:does not exist|doesn't exist|not found)"
    r"|(?:does not|doesn't) have an? \S+ account|invalid (?:recipient|mailbox)|recipient ?not ?found"
    r"|not a valid (?:mailbox|recipient)"
)

_RULES: tuple[_Rule, ...] = (
    # Texts specific enough to override any status code.
    _Rule(70, "greylisted, retry later", text=_t(r"grey ?list|gray ?list")),
    _Rule(70, "recipient is receiving mail too fast", text=_t(r"receiving mail (?:too quickly|at a rate)")),
    _Rule(54, "relaying denied", text=_t(r"relay(?:ing)? (?:access )?(?:denied|not (?:permitted|allowed))|unable to relay|not permitted to relay|we do not relay")),  # noqa: E501
    _Rule(50, "deferred for volume or complaints (Yahoo)", text=_t(r"\[TS[S]?\d\d\]")),
    # Exchange Online's directory-based edge blocking: the recipient is not in the tenant's directory.
    _Rule(10, "recipient does not exist (directory-based blocking)", _s("4.1") | _VAGUE, _t(r"recipient address rejected: access denied")),  # noqa: E501
    # Enhanced status codes with one meaning.
    _Rule(10, "mailbox does not exist", _s("1.1")),
    _Rule(10, "recipient domain accepts no mail (null MX)", _s("1.10")),
    _Rule(10, "bad destination address", _s("1.0")),
    _Rule(10, "recipient domain does not exist", _s("1.2")),
    _Rule(10, "bad destination address syntax", _s("1.3")),
    _Rule(10, "mailbox has moved", _s("1.6")),
    _Rule(10, "mailbox disabled", _s("2.1")),
    _Rule(50, "sender address rejected", _s("1.7", "1.8")),
    _Rule(22, "mailbox full", _s("2.2")),
    _Rule(23, "message too large", _s("2.3", "3.4")),
    _Rule(21, "unable to route to the recipient domain", _s("4.3", "4.4")),
    _Rule(24, "delivery time expired", _s("4.7")),
    _Rule(25, "authentication with the relay failed", _s("7.8")),
    _Rule(50, "sender authentication failed (SPF/DKIM/DMARC)", _s("7.20", "7.21", "7.22", "7.23", "7.24", "7.25", "7.26", "7.27", "7.509", "7.515")),  # noqa: E501
    # Texts about policy, reputation and content, under a policy or vague status.
    _Rule(53, "prohibited attachment or malware", _POLICY, _t(r"virus|malware|infected|attachment|prohibited file|executable|potential security issue")),  # noqa: E501
    _Rule(51, "sender on a blocklist or poor reputation", _POLICY, _t(r"spamhaus|spamcop|barracuda|sorbs|block ?list|black ?list|\brbl\b|dnsbl|blocked using|listed (?:at|on|in|by)|reputation")),  # noqa: E501
    _Rule(70, "too many connections", _POLICY, _t(r"too many (?:concurrent |simultaneous )?(?:smtp )?connections|connection (?:limit|rate)|too busy")),  # noqa: E501
    _Rule(50, "rate limited by the receiver", _POLICY, _t(r"rate.limit|unusual rate|too many (?:messages|emails|mails)|throttl|sending rate|exceeded .{0,40}limit")),  # noqa: E501
    _Rule(52, "rejected as spam", _POLICY, _t(r"\bspam|unsolicited|\bjunk|bulk mail|phish|content (?:rejected|filter)|message content")),  # noqa: E501
    _Rule(50, "sender authentication failed (SPF/DKIM/DMARC)", _POLICY, _t(r"\bdmarc\b|\bspf\b|\bdkim\b|unauthenticated|authentication level|not authorized to send")),  # noqa: E501
    _Rule(70, "deferred by the receiver, retry later", _POLICY, _t(r"try (?:again )?later|temporarily deferred")),
    _Rule(25, "the receiver requires TLS or authentication", _POLICY, _t(r"must issue a starttls|starttls (?:is )?required|authentication required")),  # noqa: E501
    # Texts about the recipient, only when no status code says otherwise.
    _Rule(50, "sender address rejected", _VAGUE, _t(r"sender address rejected|sender (?:domain|address) (?:not found|unknown|invalid)")),  # noqa: E501
    _Rule(10, "mailbox does not exist", _VAGUE, _t(_INVALID_RECIPIENT_TEXT)),
    _Rule(10, "mailbox disabled", _VAGUE, _t(r"(?:mailbox|account|user)(?: is)? (?:disabled|inactive|deactivated)")),
    _Rule(22, "mailbox full", _VAGUE, _t(r"mailbox (?:is )?full|over ?quota|quota exceeded|exceeded (?:its |the )?storage|insufficient (?:storage|space)")),  # noqa: E501
    _Rule(23, "message too large", _VAGUE, _t(r"too (?:large|big)|size (?:limit|exceeds)|exceeds .{0,30}size")),
    _Rule(21, "recipient domain not found", _VAGUE, _t(r"host (?:or domain name )?not found|domain not found|unroutable|unrouteable")),  # noqa: E501
    _Rule(40, "mailbox unavailable", _VAGUE, _t(r"mailbox unavailable")),
    _Rule(70, "service unavailable", _VAGUE, _t(r"service (?:not available|unavailable|temporarily unavailable)|try again later|temporar")),  # noqa: E501
    # What is left of each status subject (RFC 3463 §3).
    _Rule(40, "address problem", _s("1.*")),
    _Rule(40, "mailbox problem", _s("2.*")),
    _Rule(40, "receiving mail system problem", _s("3.*")),
    _Rule(40, "network or routing problem", _s("4.*")),
    _Rule(40, "protocol problem", _s("5.*")),
    _Rule(40, "message content or format not accepted", _s("6.*")),
    _Rule(50, "blocked by the receiver's policy", _s("7.*")),
)  # fmt: skip

_UNMATCHED = _Rule(1, "unclassified failure")
# A temporary reply is never a hard bounce, and "we do not know" is, for a 4xx, simply a transient failure.
_TEMPORARY_CLASS = MappingProxyType({10: 20, 30: 20, 90: 20, 1: 70, 40: 70})

# RFC 3463: class.subject.detail, 1-3 digits each; not part of a longer dotted number (an IP address, a version).
_ENHANCED_STATUS = re.compile(r"(?<![\w.])([45])\.(\d{1,3})\.(\d{1,3})(?![\w]|\.\d)")


def classify_reply(code: int, message: str) -> Outcome:
    """Classify an SMTP reply: ``code`` decides temporary (not 5xx) or permanent (5xx), the rules the class.

    ``message`` is the reply text, with or without the code in front and possibly several lines; the first
    RFC 3463 enhanced status code in it is used.
    """
    permanent = 500 <= code <= 599
    found = _ENHANCED_STATUS.search(message)
    status = (found.group(2), found.group(3)) if found else None
    rule = next((r for r in _RULES if r.matches(status, message)), _UNMATCHED)
    bounce_class = rule.bounce_class if permanent else _TEMPORARY_CLASS.get(rule.bounce_class, rule.bounce_class)
    return Outcome(
        kind=OutcomeKind.PERMANENT if permanent else OutcomeKind.TEMPORARY,
        bounce_class=bounce_class,
        suppress=permanent and is_hard_bounce(bounce_class),
        enhanced_status=found.group(0) if found else None,
        reason=rule.reason,
        code=code,
        raw=f"{code} {' '.join(message.split())}"[:1000],
    )


# kind -> (outcome kind, bounce class, suppress, reason)
_CONNECTION_ERRORS: MappingProxyType[str, tuple[OutcomeKind, int, bool, str]] = MappingProxyType(
    {
        "timeout": (OutcomeKind.TEMPORARY, 24, False, "timed out"),
        "connect": (OutcomeKind.TEMPORARY, 70, False, "could not connect"),
        "disconnect": (OutcomeKind.TEMPORARY, 70, False, "connection lost"),
        "tls": (OutcomeKind.TEMPORARY, 70, False, "TLS negotiation failed"),
        "dns_temporary": (OutcomeKind.TEMPORARY, 21, False, "DNS lookup failed temporarily"),
        "no_mx": (OutcomeKind.PERMANENT, 21, False, "recipient domain has no mail server"),
        "null_mx": (OutcomeKind.PERMANENT, 21, False, "recipient domain accepts no mail (null MX)"),
        "nxdomain": (OutcomeKind.PERMANENT, 10, True, "recipient domain does not exist"),
    }
)
CONNECTION_ERROR_KINDS = frozenset(_CONNECTION_ERRORS)


def classify_connection_error(kind: str, detail: str) -> Outcome:
    """Classify a failure without an SMTP reply; ``reason`` is the fixed text, then ``detail`` if any.

    Network trouble is temporary. A domain with no (or a null) MX is permanent but not suppressed, since DNS
    mistakes get fixed; a domain that does not exist at all (NXDOMAIN) is as hard as an unknown mailbox.
    """
    try:
        outcome_kind, bounce_class, suppress, reason = _CONNECTION_ERRORS[kind]
    except KeyError:
        raise ValueError(f"unknown connection error kind {kind!r}") from None
    detail = " ".join(detail.split())
    text = f"{reason}: {detail}" if detail else reason
    return Outcome(outcome_kind, bounce_class, suppress, None, text, raw=text[:1000])
