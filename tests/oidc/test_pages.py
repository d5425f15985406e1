"""The sign-in pages: plain words in the browser's language (English or Indonesian), the stable
code on every page, and nothing from the provider or the person rendered as markup."""

from __future__ import annotations

import pytest

from confserver.oidc.pages import Who, language, page


@pytest.mark.parametrize(
    ("header", "lang"),
    [
        ("", "en"),
        ("id-ID,id;q=0.9,en-US;q=0.8,en;q=0.7", "id"),
        ("en-GB,en;q=0.9,id;q=0.8", "en"),
        ("fr-FR,fr;q=0.9,id;q=0.5", "id"),
        ("de", "en"),
        ("id;q=abc,en;q=0.1", "en"),
        ("x" * 5000, "en"),
    ],
)
def test_the_language_follows_the_browser(header: str, lang: str) -> None:
    assert language(header) == lang


def test_a_refusal_in_indonesian_keeps_its_code_and_names_who_is_signed_in() -> None:
    resp = page(
        "oidc_not_allowed",
        "This meeting is not open to your account.",
        403,
        lang="id",
        room="rapat",
        who=Who("eve@example.org", "Eve"),
    )
    body = resp.text or ""
    assert resp.headers["Content-Language"] == "id"
    assert "Rapat ini tidak terbuka untuk Anda" in body
    assert "Masuk sebagai <strong>Eve</strong> (eve@example.org)" in body
    assert 'data-testid="sso-code">oidc_not_allowed<' in body
    assert 'href="/auth/logout">Keluar<' in body
    assert "sso-retry" not in body  # trying again cannot change a policy


def test_names_from_the_provider_are_text_not_markup() -> None:
    body = (
        page("oidc_not_allowed", "m", 403, who=Who("<b>x</b>@example.org", '<script>alert(1)</script>"')).text
        or ""
    )
    assert "<script>" not in body and "<b>x</b>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;" in body


def test_a_failure_offers_to_try_again_for_its_room() -> None:
    body = page("oidc_state_mismatch", "this answer is not yours", 400, room="rapat-1").text or ""
    assert 'href="/auth/sign-in/rapat-1">Try again<' in body
    assert "The sign-in did not work" in body and "this answer is not yours" in body
