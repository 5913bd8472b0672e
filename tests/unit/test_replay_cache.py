"""The JWT replay cache the CDS service's worker processes share (SQLite, one atomic statement)."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from rls_screen.cds.auth import ReplayCache, SqliteReplayCache
from rls_screen.cds.errors import AuthenticationError

ISS = "https://ehr.example.test"


@pytest.mark.parametrize("make", [lambda _: ReplayCache(), SqliteReplayCache], ids=["memory", "sqlite"])
def test_first_use_then_replay_then_usable_again_after_expiry(tmp_path: Path, make: object) -> None:
    cache = make(tmp_path / "state.sqlite3")  # type: ignore[operator]
    assert cache.first_use(ISS, "a", expires_at=100.0, now=10.0)
    assert not cache.first_use(ISS, "a", expires_at=100.0, now=20.0)
    assert cache.first_use("https://other.example.test", "a", expires_at=100.0, now=20.0)  # per issuer
    assert cache.first_use(ISS, "a", expires_at=300.0, now=101.0)  # the old token has expired
    assert not cache.first_use(ISS, "a", expires_at=300.0, now=102.0)


def test_an_expired_entry_not_yet_swept_is_replaced_in_place(tmp_path: Path) -> None:
    """The upsert's own expiry test, between sweeps (the first call sweeps; the next sweep is 60 s later)."""
    cache = SqliteReplayCache(tmp_path / "s.sqlite3")
    assert cache.first_use(ISS, "a", expires_at=70.0, now=60.0)
    assert not cache.first_use(ISS, "a", expires_at=70.0, now=69.0)
    assert cache.first_use(ISS, "a", expires_at=200.0, now=71.0)  # expired at 70, still in the table
    assert not cache.first_use(ISS, "a", expires_at=200.0, now=72.0)  # and its new expiry was stored
    assert len(cache) == 1


def test_two_caches_on_one_file_see_each_others_tokens(tmp_path: Path) -> None:
    one, two = SqliteReplayCache(tmp_path / "s.sqlite3"), SqliteReplayCache(tmp_path / "s.sqlite3")
    assert one.first_use(ISS, "jti-1", expires_at=100.0, now=1.0)
    assert not two.first_use(ISS, "jti-1", expires_at=100.0, now=2.0)
    assert two.first_use(ISS, "jti-2", expires_at=100.0, now=2.0)
    assert not one.first_use(ISS, "jti-2", expires_at=100.0, now=3.0)


def test_expired_entries_are_swept(tmp_path: Path) -> None:
    cache = SqliteReplayCache(tmp_path / "s.sqlite3")
    for n in range(5):
        cache.first_use(ISS, f"old-{n}", expires_at=50.0, now=1.0)
    assert len(cache) == 5
    cache.first_use(ISS, "new", expires_at=500.0, now=100.0)  # the first call after 60 s sweeps
    assert len(cache) == 1


def _claim_all(path: str, jtis: list[str], offset: int, start: Any, out: Any) -> None:
    cache = SqliteReplayCache(Path(path))
    start.wait(timeout=60)  # every process claims at the same moment, each from its own place in the list
    ordered = jtis[offset:] + jtis[:offset]
    out.put([jti for jti in ordered if cache.first_use(ISS, jti, expires_at=1e12, now=1.0)])


def _race(path: Path, jtis: list[str]) -> list[list[str]]:
    """Three processes claim the same jtis at once, each starting a third of the way further along."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    start = context.Barrier(3)
    offsets = [n * len(jtis) // 3 for n in range(3)]
    workers = [context.Process(target=_claim_all, args=(str(path), jtis, o, start, queue)) for o in offsets]
    for worker in workers:
        worker.start()
    claimed = [queue.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    return claimed


def test_racing_processes_accept_each_jti_exactly_once(tmp_path: Path) -> None:
    jtis = [f"jti-{n}" for n in range(3000)]
    raced = False
    for attempt in range(3):  # a loaded machine may run one process to the end before the others start
        claimed = _race(tmp_path / f"s{attempt}.sqlite3", jtis)
        assert sorted(jti for batch in claimed for jti in batch) == sorted(jtis)
        raced = sum(1 for batch in claimed if batch) >= 2
        if raced:
            break
    assert raced, "the processes never ran at the same time"


def test_a_broken_database_fails_closed(tmp_path: Path) -> None:
    cache = SqliteReplayCache(tmp_path / "s.sqlite3")
    with sqlite3.connect(tmp_path / "s.sqlite3") as db:
        db.execute("DROP TABLE jwt_seen")
    with pytest.raises(AuthenticationError, match="replay check unavailable"):
        cache.first_use(ISS, "x", expires_at=100.0, now=1.0)
