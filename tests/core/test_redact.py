"""Redaction of an agent's text: the redactor built once gives what the one-off functions give."""

from __future__ import annotations

import json

import pytest

from reconciler.core.redact import REDACTED, Redactor, agent_text, redact

SECRETS = ("s3cr3t-value", "s3cr3t", 'quote"and\\slash', "naïve-sécret", "ab", "")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "nothing to hide",
        "token s3cr3t-value and s3cr3t",
        json.dumps({"env": {"A": 'quote"and\\slash', "B": "naïve-sécret"}}),
        json.dumps({"B": "naïve-sécret"}, ensure_ascii=False),
        "ab is too short to be a secret",
        "x" * 600 + "s3cr3t",
    ],
)
def test_the_redactor_gives_what_the_functions_give(text: str) -> None:
    once = Redactor(SECRETS)
    assert once.redact(text) == redact(text, SECRETS)
    assert once.agent_text(text) == agent_text(text, SECRETS)
    assert once.agent_text(text, 40) == agent_text(text, SECRETS, 40)


def test_every_form_of_a_secret_is_replaced_longest_first() -> None:
    r = Redactor(SECRETS)
    echoed = json.dumps({"A": 'quote"and\\slash', "B": "naïve-sécret", "C": "s3cr3t-value"})
    clean = r.redact(echoed)
    assert "slash" not in clean and "sécret" not in clean and "s\\u00e9cret" not in clean
    assert "s3cr3t" not in clean and "-value" not in clean  # the longer value went whole, not split
    assert clean.count(REDACTED) == 3
    assert r.redact("ab stays") == "ab stays"


def test_a_text_is_redacted_before_it_is_cut() -> None:
    r = Redactor(["s3cr3t-value"])
    text = "y" * 95 + "s3cr3t-value"
    cut = r.agent_text(text, 100)
    assert len(cut) == 100 and cut.endswith("…") and "s3cr3t" not in cut
