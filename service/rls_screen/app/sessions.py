"""Server-side state of the app: launches in flight (by ``state``) and signed-in sessions (by cookie).

The browser holds only opaque random keys (the launch cookie, the session cookie); the PKCE
verifier, the nonce and the access token stay in this process's memory. A launch is taken once
(``take``): a replayed or forged ``state`` finds nothing. Run ``rls-screen serve`` with one worker
when the app is on (a second worker would not know the first one's sessions).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rls_screen.app.smart import Pkce, SmartConfiguration


@dataclass(frozen=True)
class PendingLaunch:
    """One authorization request on its way: what the callback needs to finish it."""

    iss: str
    config: SmartConfiguration
    pkce: Pkce
    nonce: str | None
    browser_key: str
    """Also set as a cookie on the browser that started: the callback must come from that browser."""
    standalone: bool
    expires_at: float


@dataclass(frozen=True)
class UserSession:
    """A signed-in user: the FHIR server, the patient in context, the token (never sent to the browser)."""

    iss: str
    patient: str
    access_token: str
    scope: str
    fhir_user: str | None
    user_name: str | None
    csrf_token: str
    expires_at: float


@dataclass
class SessionStore:
    """Launches and sessions in memory, behind one lock; expired entries are dropped when met."""

    clock: Callable[[], float] = time.monotonic
    _launches: dict[str, PendingLaunch] = field(default_factory=dict)
    _sessions: dict[str, UserSession] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def new_key() -> str:
        return secrets.token_urlsafe(32)

    def add_launch(self, state: str, launch: PendingLaunch) -> None:
        with self._lock:
            self._sweep()
            self._launches[state] = launch

    def take_launch(self, state: str) -> PendingLaunch | None:
        with self._lock:
            launch = self._launches.pop(state, None)
        if launch is None or launch.expires_at < self.clock():
            return None
        return launch

    def add_session(self, session: UserSession) -> str:
        key = self.new_key()
        with self._lock:
            self._sweep()
            self._sessions[key] = session
        return key

    def session(self, key: str | None) -> UserSession | None:
        if not key:
            return None
        with self._lock:
            found = self._sessions.get(key)
            if found is not None and found.expires_at < self.clock():
                del self._sessions[key]
                found = None
        return found

    def end_session(self, key: str | None) -> None:
        with self._lock:
            self._sessions.pop(key or "", None)

    def _sweep(self) -> None:
        now = self.clock()
        for table in (self._launches, self._sessions):
            for key in [k for k, v in table.items() if v.expires_at < now]:
                del table[key]
