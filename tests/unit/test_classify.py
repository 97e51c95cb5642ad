"""Classifying SMTP outcomes: real replies from real providers, connection failures, and the invariants."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postroom.delivery.classify import (
    ADMIN_BOUNCE_CLASSES,
    BLOCK_BOUNCE_CLASSES,
    BOUNCE_CLASS_NAMES,
    CONNECTION_ERROR_KINDS,
    HARD_BOUNCE_CLASSES,
    TEMPORARY_BOUNCE_CLASSES,
    UNDETERMINED_BOUNCE_CLASSES,
    BounceCategory,
    Outcome,
    OutcomeKind,
    bounce_category,
    classify_connection_error,
    classify_reply,
    is_hard_bounce,
)

T = OutcomeKind.TEMPORARY
P = OutcomeKind.PERMANENT

# (code, reply text as the SMTP client reports it, kind, bounce class, suppress, enhanced status)
REPLIES: list[tuple[int, str, OutcomeKind, int, bool, str | None]] = [
    # Gmail
    (550, "5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces. For more information, go to\n5.1.1  https://support.google.com/mail/?p=NoSuchUser d2-20020a05 - gsmtp", P, 10, True, "5.1.1"),  # noqa: E501
    (550, "550-5.1.1 The email account that you tried to reach does not exist.\n550 5.1.1 https://support.google.com/mail/?p=NoSuchUser", P, 10, True, "5.1.1"),  # noqa: E501
    (550, "5.7.26 This mail has been blocked because the sender is unauthenticated. Gmail requires all senders to authenticate with either SPF or DKIM.", P, 50, False, "5.7.26"),  # noqa: E501
    (550, "5.7.26 Unauthenticated email from example.com is not accepted due to domain's DMARC policy.", P, 50, False, "5.7.26"),  # noqa: E501
    (421, "4.7.28 Gmail has detected an unusual rate of unsolicited mail originating from your DKIM domain [example.com 12]. To protect our users from spam, mail sent from your domain has been temporarily rate limited.", T, 50, False, "4.7.28"),  # noqa: E501
    (452, "4.2.2 The email account that you tried to reach is over quota. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaTemp", T, 22, False, "4.2.2"),  # noqa: E501
    (552, "5.2.2 The email account that you tried to reach is over quota and inactive.", P, 22, False, "5.2.2"),
    (550, "5.2.1 The email account that you tried to reach is disabled. https://support.google.com/mail/?p=DisabledUser", P, 10, True, "5.2.1"),  # noqa: E501
    (450, "4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered.", T, 70, False, "4.2.1"),  # noqa: E501
    (550, "5.7.1 [203.0.113.5] Our system has detected that this message is likely unsolicited mail. To reduce the amount of spam sent to Gmail, this message has been blocked.", P, 52, False, "5.7.1"),  # noqa: E501
    (552, "5.7.0 This message was blocked because its content presents a potential security issue.", P, 53, False, "5.7.0"),  # noqa: E501
    (421, "4.7.0 Try again later, closing connection. (EHLO) 4si123 - gsmtp", T, 70, False, "4.7.0"),
    # Microsoft (Outlook.com, Exchange Online)
    (550, "5.7.515 Access denied, sending domain example.com doesn't meet the required authentication level.", P, 50, False, "5.7.515"),  # noqa: E501
    (550, "5.5.0 Requested action not taken: mailbox unavailable (S2017062302). [AM1EUR02FT012.eop-EUR02.prod.protection.outlook.com]", P, 40, False, "5.5.0"),  # noqa: E501
    (550, "5.4.1 Recipient address rejected: Access denied. AS(201806281) [DB5EUR01FT041.eop-EUR01.prod.protection.outlook.com]", P, 10, True, "5.4.1"),  # noqa: E501
    (550, "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", P, 10, True, "5.1.10"),
    (550, "5.7.1 Unfortunately, messages from [203.0.113.5] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150).", P, 51, False, "5.7.1"),  # noqa: E501
    (451, "4.7.650 The mail server [203.0.113.5] has been temporarily rate limited due to IP reputation.", T, 51, False, "4.7.650"),  # noqa: E501
    (554, "5.7.9 Message not accepted for policy reasons.", P, 50, False, "5.7.9"),
    # Yahoo / AOL
    (421, "4.7.0 [TSS04] Messages from 203.0.113.5 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes", T, 50, False, "4.7.0"),  # noqa: E501
    (554, "delivery error: dd This user doesn't have a yahoo.com account (ann@yahoo.com) [0] - mta1001.mail.ne1.yahoo.com", P, 10, True, None),  # noqa: E501
    (552, "1 Requested mail action aborted, mailbox not found", P, 10, True, None),
    # Postfix, Exim, Sendmail and friends
    (450, "4.7.1 <ann@example.org>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.org.html", T, 70, False, "4.7.1"),  # noqa: E501
    (450, "4.7.1 greylisted, please try again in 300 seconds", T, 70, False, "4.7.1"),
    (550, "5.1.1 <ann@example.org>: Recipient address rejected: User unknown in virtual mailbox table", P, 10, True, "5.1.1"),  # noqa: E501
    (450, "4.1.1 <ann@example.org>: Recipient address rejected: User unknown in local recipient table", T, 20, False, "4.1.1"),  # noqa: E501
    (554, "5.7.1 Service unavailable; Client host [203.0.113.5] blocked using zen.spamhaus.org", P, 51, False, "5.7.1"),
    (554, "5.7.1 Message rejected as spam", P, 52, False, "5.7.1"),
    (554, "5.7.1 <ann@example.org>: Relay access denied", P, 54, False, "5.7.1"),
    (552, "5.3.4 Message size exceeds fixed limit", P, 23, False, "5.3.4"),
    (552, "5.2.3 Message exceeds maximum size of the mailbox", P, 23, False, "5.2.3"),
    (553, "5.1.3 <ann@@example.org>... Bad address syntax", P, 10, True, "5.1.3"),
    (550, "5.1.2 <ann@nonexistent.example>: Recipient address rejected: Domain not found", P, 10, True, "5.1.2"),
    (521, "5.2.1 ann@example.org: mailbox disabled", P, 10, True, "5.2.1"),
    (451, "4.3.0 Temporary local problem - please try later", T, 70, False, "4.3.0"),
    (450, "4.1.8 <bounce@example.com>: Sender address rejected: Domain not found", T, 50, False, "4.1.8"),
    (550, "5.0.0 <ann@example.org>... User unknown", P, 10, True, "5.0.0"),
    (550, "#5.1.0 Address rejected ann@example.org", P, 10, True, "5.1.0"),
    (550, "5.7.1 Client host rejected: cannot find your reverse hostname, [203.0.113.5]", P, 50, False, "5.7.1"),
    (554, "5.6.0 Message content rejected due to suspected virus", P, 53, False, "5.6.0"),
    (530, "5.7.0 Must issue a STARTTLS command first", P, 25, False, "5.7.0"),
    (535, "5.7.8 Username and Password not accepted", P, 25, False, "5.7.8"),
    (554, "5.4.4 Unable to route: no mail hosts for domain", P, 21, False, "5.4.4"),
    (421, "4.4.2 mx.example.org Error: timeout exceeded", T, 70, False, "4.4.2"),
    (421, "4.7.0 Too many concurrent SMTP connections; please try again later", T, 70, False, "4.7.0"),
    (552, "Requested mail action aborted: exceeded storage allocation", P, 22, False, None),
    # No enhanced status code at all
    (550, "No such user here", P, 10, True, None),
    (550, "Requested action not taken: mailbox unavailable", P, 40, False, None),
    (550, "Administrative prohibition", P, 1, False, None),
    (421, "Service not available, closing transmission channel", T, 70, False, None),
    (451, "Requested action aborted: local error in processing", T, 70, False, None),
    (554, "Transaction failed", P, 1, False, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("code", "message", "kind", "bounce_class", "suppress", "enhanced"),
    REPLIES,
    ids=[f"{r[0]} {r[1][:50]}" for r in REPLIES],
)
def test_a_real_world_reply_is_classified(
    code: int, message: str, kind: OutcomeKind, bounce_class: int, suppress: bool, enhanced: str | None
) -> None:
    outcome = classify_reply(code, message)
    assert (outcome.kind, outcome.bounce_class, outcome.suppress, outcome.enhanced_status) == (
        kind,
        bounce_class,
        suppress,
        enhanced,
    )
    assert outcome.reason and len(outcome.reason) <= 80


def test_the_table_covers_at_least_thirty_replies() -> None:
    assert len(REPLIES) >= 30


def test_the_reason_is_short_human_text_not_the_raw_reply() -> None:
    assert classify_reply(550, "5.1.1 The email account that you tried to reach does not exist.").reason == (
        "mailbox does not exist"
    )
    assert classify_reply(552, "5.2.2 over quota").reason == "mailbox full"


def test_the_enhanced_status_may_follow_the_reply_code_in_the_text() -> None:
    assert classify_reply(550, "550 5.1.1 <ann@example.org>: user unknown").enhanced_status == "5.1.1"
    assert classify_reply(550, "550-5.1.1 no such user").enhanced_status == "5.1.1"


def test_numbers_that_only_look_like_status_codes_are_ignored() -> None:
    assert classify_reply(554, "rejected by 10.5.1.1 (see version 25.4.1.12)").enhanced_status is None


def test_a_success_class_enhanced_status_is_ignored() -> None:
    assert classify_reply(550, "2.1.5 unexpected").enhanced_status is None


def test_a_temporary_reply_with_an_invalid_recipient_status_is_a_soft_bounce() -> None:
    outcome = classify_reply(450, "4.1.1 mailbox does not exist")
    assert (outcome.kind, outcome.bounce_class, outcome.suppress) == (T, 20, False)
    assert outcome.reason == "mailbox does not exist"


def test_policy_blocks_never_suppress_even_when_they_mention_the_recipient() -> None:
    for text in (
        "Recipient rejected: sender blocked by recipient's policy",
        "Recipient address rejected: Access denied",
    ):
        outcome = classify_reply(550, f"5.7.1 {text}")
        assert (outcome.kind, outcome.bounce_class, outcome.suppress) == (P, 50, False)


def test_an_unexpected_non_failure_code_is_treated_as_temporary() -> None:
    outcome = classify_reply(250, "OK")
    assert (outcome.kind, outcome.bounce_class, outcome.suppress) == (T, 70, False)


@pytest.mark.parametrize(
    ("kind", "outcome_kind", "bounce_class", "suppress"),
    [
        ("timeout", T, 24, False),
        ("connect", T, 70, False),
        ("disconnect", T, 70, False),
        ("tls", T, 70, False),
        ("dns_temporary", T, 21, False),
        ("no_mx", P, 21, False),
        ("null_mx", P, 21, False),
        ("nxdomain", P, 10, True),
    ],
)
def test_a_connection_error_is_classified(
    kind: str, outcome_kind: OutcomeKind, bounce_class: int, suppress: bool
) -> None:
    outcome = classify_connection_error(kind, "mx.example.org: something went wrong")
    assert (outcome.kind, outcome.bounce_class, outcome.suppress, outcome.enhanced_status) == (
        outcome_kind,
        bounce_class,
        suppress,
        None,
    )
    assert outcome.reason.endswith(": mx.example.org: something went wrong")


def test_the_connection_error_kinds_are_exactly_those_documented() -> None:
    assert CONNECTION_ERROR_KINDS == {
        "timeout", "connect", "disconnect", "tls", "dns_temporary", "no_mx", "null_mx", "nxdomain"
    }  # fmt: skip


def test_a_connection_error_without_detail_has_a_plain_reason() -> None:
    assert classify_connection_error("timeout", "  ").reason == "timed out"
    assert classify_connection_error("tls", "handshake\n failed").reason == "TLS negotiation failed: handshake failed"


def test_an_unknown_connection_error_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="martian"):
        classify_connection_error("martian", "")


def test_bounce_categories_follow_sparkpost() -> None:
    assert HARD_BOUNCE_CLASSES == {10, 30, 90}
    assert BLOCK_BOUNCE_CLASSES == {50, 51, 52, 53, 54}
    assert TEMPORARY_BOUNCE_CLASSES == {20, 21, 22, 23, 24, 40, 60, 70, 100}
    assert ADMIN_BOUNCE_CLASSES == {25}
    assert UNDETERMINED_BOUNCE_CLASSES == {1, 80}
    groups = [
        HARD_BOUNCE_CLASSES,
        BLOCK_BOUNCE_CLASSES,
        TEMPORARY_BOUNCE_CLASSES,
        ADMIN_BOUNCE_CLASSES,
        UNDETERMINED_BOUNCE_CLASSES,
    ]
    assert sum(len(g) for g in groups) == len(set().union(*groups)) == len(BOUNCE_CLASS_NAMES)  # a partition
    assert set().union(*groups) == set(BOUNCE_CLASS_NAMES)
    assert bounce_category(51) is BounceCategory.BLOCK
    assert bounce_category(25) is BounceCategory.ADMIN


@pytest.mark.parametrize(("bounce_class", "hard"), [(10, True), (30, True), (90, True), (20, False), (50, False)])
def test_is_hard_bounce(bounce_class: int, hard: bool) -> None:
    assert is_hard_bounce(bounce_class) is hard


def test_an_unknown_bounce_class_is_refused() -> None:
    with pytest.raises(ValueError, match="42"):
        is_hard_bounce(42)


def assert_consistent(outcome: Outcome) -> None:
    assert outcome.bounce_class in BOUNCE_CLASS_NAMES
    assert outcome.suppress == (outcome.kind is P and is_hard_bounce(outcome.bounce_class))
    assert outcome.reason


reply_text = st.one_of(
    st.text(max_size=200),
    st.builds(
        "{}.{}.{} {}".format,
        st.sampled_from("2345"),
        st.integers(0, 999),
        st.integers(0, 999),
        st.sampled_from([r[1] for r in REPLIES] + ["", "user unknown", "spam", "mailbox full"]),
    ),
)


@given(code=st.integers(400, 499), message=reply_text)
def test_any_4xx_reply_is_temporary_and_never_suppresses(code: int, message: str) -> None:
    outcome = classify_reply(code, message)
    assert outcome.kind is T
    assert not outcome.suppress
    assert not is_hard_bounce(outcome.bounce_class)
    assert_consistent(outcome)


@given(code=st.integers(500, 599), message=reply_text)
def test_any_5xx_reply_is_permanent(code: int, message: str) -> None:
    outcome = classify_reply(code, message)
    assert outcome.kind is P
    assert_consistent(outcome)


@given(code=st.integers(500, 599), message=reply_text)
def test_a_5xx_reply_with_a_policy_status_never_suppresses(code: int, message: str) -> None:
    outcome = classify_reply(code, f"5.7.1 {message}")
    assert not outcome.suppress
