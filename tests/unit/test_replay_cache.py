"""The JWT replay cache every worker process and replica shares (the state store, one atomic statement)."""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rls_screen.cds.auth import ReplayCache, StoredReplayCache
from rls_screen.cds.errors import AuthenticationError
from rls_screen.errors import ConfigurationError
from rls_screen.state import StateDatabase, open_database, parse_state_url, recorded_versions, sqlite_target

ISS = "https://ehr.example.test"


@pytest.fixture
def db(state_url: str) -> Iterator[StateDatabase]:
    database = open_database(parse_state_url(state_url))
    yield database
    database.close()


def _caches() -> list[Any]:
    return [pytest.param(lambda _: ReplayCache(), id="memory"), pytest.param(StoredReplayCache, id="stored")]


@pytest.mark.parametrize("make", _caches())
def test_first_use_then_replay_then_usable_again_after_expiry(
    db: StateDatabase, make: Callable[[StateDatabase], ReplayCache | StoredReplayCache]
) -> None:
    cache = make(db)
    assert cache.first_use(ISS, "a", expires_at=100.0, now=10.0)
    assert not cache.first_use(ISS, "a", expires_at=100.0, now=20.0)
    assert cache.first_use("https://other.example.test", "a", expires_at=100.0, now=20.0)  # per issuer
    assert cache.first_use(ISS, "a", expires_at=300.0, now=101.0)  # the old token has expired
    assert not cache.first_use(ISS, "a", expires_at=300.0, now=102.0)


def test_an_expired_entry_not_yet_swept_is_replaced_in_place(db: StateDatabase) -> None:
    """The upsert's own expiry test, between sweeps (the first call sweeps; the next sweep is 60 s later)."""
    cache = StoredReplayCache(db)
    assert cache.first_use(ISS, "a", expires_at=70.0, now=60.0)
    assert not cache.first_use(ISS, "a", expires_at=70.0, now=69.0)
    assert cache.first_use(ISS, "a", expires_at=200.0, now=71.0)  # expired at 70, still in the table
    assert not cache.first_use(ISS, "a", expires_at=200.0, now=72.0)  # and its new expiry was stored
    assert len(cache) == 1


def test_expiry_keeps_sub_second_precision(db: StateDatabase) -> None:
    """Epoch seconds need a double: PostgreSQL's REAL would round 1.8e9 to the nearest 128 s."""
    cache = StoredReplayCache(db)
    assert cache.first_use(ISS, "a", expires_at=1_800_000_000.5, now=1_800_000_000.0)
    assert not cache.first_use(ISS, "a", expires_at=1_800_000_000.5, now=1_800_000_000.4)
    assert cache.first_use(ISS, "a", expires_at=1_800_000_100.0, now=1_800_000_000.6)


def test_two_stores_on_one_database_see_each_others_tokens(state_url: str) -> None:
    """Two StateDatabase objects: two replicas' pools on one PostgreSQL, or two workers on one SQLite file."""
    first, second = open_database(parse_state_url(state_url)), open_database(parse_state_url(state_url))
    try:
        one, two = StoredReplayCache(first), StoredReplayCache(second)
        assert one.first_use(ISS, "jti-1", expires_at=100.0, now=1.0)
        assert not two.first_use(ISS, "jti-1", expires_at=100.0, now=2.0)
        assert two.first_use(ISS, "jti-2", expires_at=100.0, now=2.0)
        assert not one.first_use(ISS, "jti-2", expires_at=100.0, now=3.0)
    finally:
        first.close()
        second.close()


def test_expired_entries_are_swept(db: StateDatabase) -> None:
    cache = StoredReplayCache(db)
    for n in range(5):
        cache.first_use(ISS, f"old-{n}", expires_at=50.0, now=1.0)
    assert len(cache) == 5
    cache.first_use(ISS, "new", expires_at=500.0, now=100.0)  # the first call after 60 s sweeps
    assert len(cache) == 1


def _claim_all(url: str, jtis: list[str], offset: int, start: Any, out: Any) -> None:
    db = open_database(parse_state_url(url))
    cache = StoredReplayCache(db)
    start.wait(timeout=60)  # every process claims at the same moment, each from its own place in the list
    ordered = jtis[offset:] + jtis[:offset]
    out.put([jti for jti in ordered if cache.first_use(ISS, jti, expires_at=1e12, now=1.0)])
    db.close()


def _race(url: str, jtis: list[str]) -> list[list[str]]:
    """Three processes claim the same jtis at once, each starting a third of the way further along."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    start = context.Barrier(3)
    offsets = [n * len(jtis) // 3 for n in range(3)]
    workers = [context.Process(target=_claim_all, args=(url, jtis, o, start, queue)) for o in offsets]
    for worker in workers:
        worker.start()
    claimed = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    return claimed


def test_racing_processes_accept_each_jti_exactly_once(state_url: str) -> None:
    jtis = [f"jti-{n}" for n in range(1500)]
    raced = False
    for attempt in range(3):  # a loaded machine may run one process to the end before the others start
        claimed = _race(state_url, [f"{attempt}-{jti}" for jti in jtis])
        assert sorted(jti for batch in claimed for jti in batch) == sorted(f"{attempt}-{jti}" for jti in jtis)
        raced = sum(1 for batch in claimed if batch) >= 2
        if raced:
            break
    assert raced, "the processes never ran at the same time"


def test_a_broken_database_fails_closed(db: StateDatabase) -> None:
    cache = StoredReplayCache(db)
    db.execute("DROP TABLE jwt_seen")  # what a lost table, or a database gone away, looks like to the cache
    with pytest.raises(AuthenticationError, match="replay check unavailable"):
        cache.first_use(ISS, "x", expires_at=100.0, now=1.0)


def test_the_previous_release_table_is_adopted_with_its_tokens(tmp_path: Path) -> None:
    path = tmp_path / "cds.sqlite3"
    with sqlite3.connect(path) as raw:  # as the previous release created it, without a recorded version
        raw.execute(
            "CREATE TABLE jwt_seen (issuer TEXT NOT NULL, jti TEXT NOT NULL, expires_at REAL NOT NULL, "
            "PRIMARY KEY (issuer, jti)) WITHOUT ROWID"
        )
        raw.execute("INSERT INTO jwt_seen VALUES (?, 'seen', 1e12)", (ISS,))
    db = open_database(sqlite_target(path))
    try:
        cache = StoredReplayCache(db)
        assert not cache.first_use(ISS, "seen", expires_at=100.0, now=1.0)  # still a replay after the upgrade
        assert recorded_versions(db) == {"jwt-replay": 1}
    finally:
        db.close()


def test_a_replay_table_of_another_layout_is_refused(db: StateDatabase) -> None:
    db.execute("CREATE TABLE jwt_seen (jti TEXT PRIMARY KEY)")
    with pytest.raises(ConfigurationError, match="refusing to guess"):
        StoredReplayCache(db)
