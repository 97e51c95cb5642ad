"""Judging DNS records against what a sending domain must publish (one function each, no DNS)."""

from __future__ import annotations

import ipaddress

import pytest

from postroom.domains import records
from postroom.domains.records import SpfPolicy

KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAx"


@pytest.mark.parametrize(
    ("published", "status"),
    [
        ([], "missing"),
        (["v=spf1 -all"], "missing"),
        ([f"v=DKIM1; k=rsa; p={KEY}"], "valid"),
        ([f"v=DKIM1; k=rsa; p={KEY[:20]} {KEY[20:]}"], "valid"),  # spaces inside p= are allowed
        ([f"k=rsa; p={KEY}"], "valid"),  # v= is optional
        ([f"v=DKIM1; k=rsa; p={KEY}AB"], "invalid"),
        (["v=DKIM1; k=rsa; p="], "invalid"),  # an empty key is a revoked key
        ([f"v=DKIM1; k=ed25519; p={KEY}"], "invalid"),
        ([f"v=DKIM1; p={KEY}", f"v=DKIM1; p={KEY}"], "invalid"),
    ],
    ids=["none", "unrelated", "ours", "split", "no-version", "other-key", "revoked", "other-type", "two"],
)
def test_dkim_record_statuses(published: list[str], status: str) -> None:
    assert records.check_dkim(published, KEY).status == status


def test_a_wrong_dkim_key_says_so() -> None:
    check = records.check_dkim([f"v=DKIM1; k=rsa; p={KEY}XYZ"], KEY)
    assert check.error == "The published key (p=) is not this domain's DKIM key."
    assert check.found == f"v=DKIM1; k=rsa; p={KEY}XYZ"


@pytest.mark.parametrize(
    ("target", "status"),
    [(None, "missing"), ("bounces.postroom.test.", "valid"), ("BOUNCES.postroom.test", "valid"), ("x.test", "invalid")],
)
def test_return_path_cname(target: str | None, status: str) -> None:
    assert records.check_cname(target, "bounces.postroom.test").status == status


def test_spf_defaults_to_the_mail_host_and_needs_exactly_one_record() -> None:
    policy = SpfPolicy((), (), "mail.postroom.test")
    assert policy.record == "v=spf1 a:mail.postroom.test ~all"
    assert records.check_spf(["v=spf1 a:mail.postroom.test ~all"], policy).status == "valid"
    assert records.check_spf(["v=spf1 mx ~all"], policy).status == "invalid"
    assert records.check_spf(["google-site-verification=x"], policy).status == "missing"
    two = ["v=spf1 a:mail.postroom.test ~all", "v=spf1 mx -all"]
    assert records.check_spf(two, policy).status == "invalid"


def test_spf_with_includes_and_addresses() -> None:
    policy = SpfPolicy(("_spf.postroom.test",), (ipaddress.ip_network("192.0.2.10/32"),), "mail.postroom.test")
    assert policy.record == "v=spf1 include:_spf.postroom.test ip4:192.0.2.10 ~all"
    assert records.check_spf(["v=spf1 include:_spf.postroom.test ip4:192.0.2.0/24 -all"], policy).status == "valid"
    assert records.check_spf(["v=spf1 include:_spf.postroom.test -all"], policy).status == "invalid"
    assert records.check_spf(["v=spf1 ip4:192.0.2.10 -all"], policy).status == "invalid"


def test_dmarc_policies_and_inheritance() -> None:
    own = records.check_dmarc(["v=DMARC1; p=reject; sp=quarantine"], found_at="a.example.com", domain="a.example.com")
    assert (own.check.status, own.policy, own.subdomain_policy, own.covered_by_parent_policy) == (
        "valid",
        "reject",
        "quarantine",
        False,
    )
    parent = records.check_dmarc(["v=DMARC1; p=none"], found_at="example.com", domain="a.example.com")
    assert parent.covered_by_parent_policy and parent.found_at_domain == "example.com"
    assert records.check_dmarc(["v=DMARC1; p=maybe"], found_at="x.test", domain="x.test").check.status == "invalid"
    assert records.check_dmarc(["v=spf1 -all"], found_at="x.test", domain="x.test").check.status == "missing"


@pytest.mark.parametrize(
    ("domain", "organisational"),
    [
        ("example.com", "example.com"),
        ("mail.example.com", "example.com"),
        ("a.b.example.co.uk", "example.co.uk"),
        ("sender.test", "sender.test"),
    ],
)
def test_organisational_domain_uses_the_public_suffix_list(domain: str, organisational: str) -> None:
    assert records.organisational_domain(domain) == organisational
    assert records.is_primary_domain(domain) == (domain == organisational)
