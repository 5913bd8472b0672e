"""Drives the SMART launch over HTTP as a browser would (cookies, redirects one at a time), for the API tests."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

from tests.app.conftest import PASSWORD, USER


def follow_to(session: requests.Session, url: str, stop_prefix: str, limit: int = 10) -> str:
    """GET and follow redirects until a Location starts with ``stop_prefix``; that Location."""
    for _ in range(limit):
        response = session.get(url, allow_redirects=False, timeout=30)
        location = response.headers.get("location")
        if location is None:
            return url
        url = urljoin(url, location)
        if url.startswith(stop_prefix):
            return url
    raise AssertionError("too many redirects")


def sign_in(session: requests.Session, authorize_url: str, auth_url: str, *, patient: str | None = None) -> str:
    """From the authorize URL through the auth server's sign-in page; returns the callback URL it sends back."""
    page_url = follow_to(session, authorize_url, f"{auth_url}/interaction/")
    page = session.get(page_url, timeout=30)
    assert page.status_code == 200, page.text[:300]
    action = re.search(r'action="(/interaction/[^"]+)"', page.text)
    assert action is not None
    form = {"username": USER, "password": PASSWORD}
    if patient is not None:
        form["patient"] = patient
    answer = session.post(urljoin(auth_url, action.group(1)), data=form, allow_redirects=False, timeout=30)
    assert answer.status_code == 303, answer.text[:300]
    return follow_to(session, urljoin(auth_url, answer.headers["location"]), "http://127.0.0.1")


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
