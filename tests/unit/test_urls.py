"""rls_screen.urls: one normal form, refusals instead of clean-ups, comparison by path segment."""

from __future__ import annotations

import pytest

from rls_screen.errors import ConfigurationError, ServerNotAllowedError, UnsafeUrlError
from rls_screen.settings import Settings
from rls_screen.urls import Allowlist, is_under, normalise, normalise_base

BASE = "https://ehr.example/fhir"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTPS://EHR.Example/fhir/Patient/1", "https://ehr.example/fhir/Patient/1"),
        ("https://ehr.example:443/fhir", "https://ehr.example/fhir"),
        ("http://127.0.0.1:80/fhir", "http://127.0.0.1/fhir"),
        ("http://127.0.0.1:8080/fhir/", "http://127.0.0.1:8080/fhir/"),
        (
            "https://ehr.example/fhir/Observation?code=a|b&_count=5",
            "https://ehr.example/fhir/Observation?code=a|b&_count=5",
        ),
        ("https://ehr.example/fhir/Patient/1#frag", "https://ehr.example/fhir/Patient/1"),
        ("https://[::1]:8443/fhir", "https://[::1]:8443/fhir"),
        ("https://ehr.example", "https://ehr.example"),
        ("https://ehr.example/fhir/Patient/a.b-1", "https://ehr.example/fhir/Patient/a.b-1"),
        ("https://ehr.example/fhir/...", "https://ehr.example/fhir/..."),  # not a dot segment
    ],
)
def test_the_normal_form(url: str, expected: str) -> None:
    assert normalise(url) == expected


REFUSED = [
    f"{BASE}/../outside",
    f"{BASE}/./Patient",
    f"{BASE}/%2e%2e/outside",
    f"{BASE}/%2E%2E/outside",
    f"{BASE}/.%2E/outside",
    f"{BASE}/%2e./outside",
    f"{BASE}/%2e/Patient",
    f"{BASE}/..;/outside",  # Tomcat and Jetty drop ";..." before resolving
    f"{BASE}/%2e%2e%3b/outside",
    f"{BASE}/%252e%252e/outside",  # decoded twice by some proxies
    f"{BASE}/..",
    f"{BASE}/a%2f..%2fb",
    f"{BASE}/a%5c..%5cb",
    f"{BASE}/a%00b",
    f"{BASE}//Patient/1",
    "https://ehr.example//fhir",
    "https://user:pass@ehr.example/fhir",
    "https://ehr.example@evil.example/fhir",
    "https://ehr.example\\@evil.example/fhir",
    f"{BASE}\\..\\outside",
    "https://ehr.example/fh ir",
    "https://ehr.example/fhir\r\nX-Injected: 1",
    "https://ehr.example/fhir/\t",
    "https://ehré.example/fhir",
    "https://ehr.example/fhir/Patient/é",
    "ftp://ehr.example/fhir",
    "javascript:alert(1)",
    "//ehr.example/fhir",
    "/fhir/Patient/1",
    "https:/ehr.example/fhir",
    "https://ehr%2eexample/fhir",
    "https://ehr.example:99999/fhir",
    "https://ehr.example:80a/fhir",
    "https://[::1/fhir",
    "https://ehr..example/fhir",
    "https://-/fhir",
    "",
]


@pytest.mark.parametrize("url", REFUSED)
def test_ambiguous_urls_are_refused_not_cleaned(url: str) -> None:
    with pytest.raises(UnsafeUrlError) as raised:
        normalise(url)
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, ServerNotAllowedError)
    assert "evil" not in str(raised.value)
    assert "pass" not in str(raised.value)
    assert not is_under(BASE, url)
    assert not Allowlist((BASE,)).allows(url)


@pytest.mark.parametrize(
    ("url", "under"),
    [
        (BASE, True),
        (f"{BASE}/", True),
        (f"{BASE}/Patient/1", True),
        (f"{BASE}?_format=json", True),
        ("HTTPS://EHR.EXAMPLE:443/fhir/Patient", True),
        ("https://ehr.example/fhirevil/x", False),
        ("https://ehr.example/fhir.evil/x", False),
        ("https://ehr.example/FHIR/Patient", False),
        ("https://ehr.example/", False),
        ("https://ehr.example:8443/fhir/Patient", False),
        ("http://ehr.example/fhir/Patient", False),
        ("https://ehr.example.evil/fhir/Patient", False),
        ("https://evil.example/fhir", False),
    ],
)
def test_is_under_compares_whole_path_segments(url: str, under: bool) -> None:
    assert is_under(BASE, url) is under
    assert is_under(BASE + "/", url) is under


def test_a_root_base_holds_every_path_of_its_host() -> None:
    assert is_under("https://ehr.example", "https://ehr.example/a/b")
    assert not is_under("https://ehr.example", "https://ehr.example:8443/a")


def test_a_base_with_a_query_or_a_refused_base_holds_nothing() -> None:
    assert not is_under(f"{BASE}?x=1", f"{BASE}/Patient")
    assert not is_under(f"{BASE}/../fhir", f"{BASE}/Patient")
    with pytest.raises(UnsafeUrlError):
        normalise_base(f"{BASE}#x")


def test_normalise_base_drops_the_trailing_slash_and_surrounding_spaces() -> None:
    assert normalise_base("  HTTPS://EHR.example:443/fhir/ ") == BASE


def test_allowlist_entries_are_normalised_and_bad_entries_refused() -> None:
    allowlist = Allowlist(("HTTPS://EHR.example:443/fhir/", BASE))
    assert allowlist.bases == (BASE,)
    with pytest.raises(UnsafeUrlError):
        Allowlist((f"{BASE}/../other",))


@pytest.mark.parametrize(
    "entry", ["https://a.example/fhir/../admin", "https://user:secret@a.example/fhir", "https://a.example/%2e%2e"]
)
def test_a_bad_allowlist_setting_is_a_configuration_error_that_does_not_quote_it(entry: str) -> None:
    with pytest.raises(ConfigurationError, match="RLS_SCREEN_FHIR_ALLOWLIST") as raised:
        Allowlist.from_settings(Settings(FHIR_BASE_URL=BASE, fhir_allowlist=f"https://b.example/r4,{entry}"))
    assert "secret" not in str(raised.value)
    assert "admin" not in str(raised.value)
    with pytest.raises(ConfigurationError, match="FHIR_BASE_URL"):
        Allowlist.from_settings(Settings(FHIR_BASE_URL=entry))


def test_check_says_why_a_url_is_refused() -> None:
    allowlist = Allowlist((BASE,))
    with pytest.raises(UnsafeUrlError, match="dot segment"):
        allowlist.check(f"{BASE}/%2e%2e/outside")
    with pytest.raises(ServerNotAllowedError, match="not on the allowlist"):
        allowlist.check("https://ehr.example/fhirevil/x")
    with pytest.raises(ServerNotAllowedError, match="plain http"):
        Allowlist(("http://ehr.example/fhir",)).check("http://ehr.example/fhir/Patient")
    allowlist.check(f"{BASE}/Patient/1")
