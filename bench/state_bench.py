"""The CDS call's state-store work on SQLite and PostgreSQL: suppression in one query against one per candidate.

    python bench/state_bench.py [--calls 300] [--rounds 3] [--candidates 4] [--postgres URL] > fragment.md

In process, one thread, on a store holding 2,000 issued cards (200 of them overridden) for 500 patients:
- ``suppressed``: the store's one statement for all the candidates of a call, against the previous release's
  way, one statement per candidate (its SQL, over the same database object);
- the whole per-call state work of a patient-view call with a JWT: the replay check (``first_use``), the
  suppression query and recording the cards shown (``record_cards``).
Interleaved rounds (the variant that goes first alternates); median microseconds per call. PostgreSQL: the
local server of ``make db-up`` (a schema of its own, dropped afterwards). Output: a markdown fragment.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from rls_screen.cds.feedback import FeedbackStore, IssuedCard, Scope
from rls_screen.cds.models import FeedbackItem
from rls_screen.cds.replay import StoredReplayCache
from rls_screen.state import StateDatabase, open_database, parse_state_url

NOW = datetime(2026, 12, 2, tzinfo=UTC)
SVC = "rls-secondary-causes"
KEYS = ("iron-insufficient-for-rls", "anemia", "kidney-failure", "hyperkalemia", "b12", "folate", "tsh", "glucose")
PER_CANDIDATE = (
    "SELECT 1 FROM issued_card c JOIN feedback f "
    "ON f.client_key = c.client_key AND f.service_id = c.service_id AND f.card_uuid = c.uuid "
    "WHERE c.client_key = ? AND c.service_id = ? AND c.subject_key = ? AND c.card_key = ? "
    "AND c.data_signature = ? AND f.outcome = 'overridden' AND f.received_at >= ? LIMIT 1"
)


def per_candidate(db: StateDatabase, scope: Scope, candidates: list[tuple[str, str]], since: datetime) -> set[str]:
    """The previous release's suppression: one statement per candidate."""
    return {
        key
        for key, signature in candidates
        if db.execute(
            PER_CANDIDATE, (scope.client_key, SVC, scope.subject_key, key, signature, since.isoformat())
        ).one()
    }


def fill(store: FeedbackStore) -> None:
    cards = [
        IssuedCard(f"u{p}-{k}", SVC, store.scope("iss", None, f"p{p}"), KEYS[k], f"sig-{p}-{k}")
        for p in range(500)
        for k in range(4)
    ]
    store.record_cards(cards, NOW)
    items = [
        FeedbackItem.model_validate({"card": f"u{p}-0", "outcome": "overridden", "outcomeTimestamp": NOW.isoformat()})
        for p in range(0, 500, 5)
    ] + [
        FeedbackItem.model_validate({"card": f"u{p}-1", "outcome": "overridden", "outcomeTimestamp": NOW.isoformat()})
        for p in range(0, 500, 5)
    ]
    store.add_feedback(store.client_key("iss", None), SVC, items, NOW)


def timed(calls: int, one: Callable[[int], object]) -> float:
    start = time.perf_counter()
    for n in range(calls):
        one(n)
    return (time.perf_counter() - start) / calls * 1e6


def measure(db: StateDatabase, calls: int, rounds: int, candidates: int) -> dict[str, float]:
    store, replay = FeedbackStore(db, salt="bench"), StoredReplayCache(db)
    fill(store)
    since = NOW - timedelta(days=30)

    def pairs(n: int) -> tuple[Scope, list[tuple[str, str]]]:
        p = (n * 5) % 500  # every call's patient has overrides: the queries find rows
        return store.scope("iss", None, f"p{p}"), [(KEYS[k], f"sig-{p}-{k}") for k in range(candidates)]

    def one_query(n: int) -> object:
        scope, found = pairs(n)
        return store.suppressed(SVC, scope, found, since)

    def n_queries(n: int) -> object:
        scope, found = pairs(n)
        return per_candidate(db, scope, found, since)

    run = uuid.uuid4().hex[:8]

    def whole_call(n: int) -> object:
        scope, found = pairs(n)
        replay.first_use("iss", f"{run}-{n}-{time.perf_counter_ns()}", 1e12, 1.0)
        hidden = store.suppressed(SVC, scope, found, since)
        shown = [IssuedCard(f"c{run}-{n}-{k}", SVC, scope, k, s) for k, s in found if k not in hidden]
        store.record_cards(shown, NOW)
        return hidden

    assert all(one_query(n) == n_queries(n) for n in range(20)), "the two ways disagree"
    figures: dict[str, list[float]] = {"one": [], "per": [], "call": []}
    for r in range(rounds):
        order = [("one", one_query), ("per", n_queries)]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            figures[name].append(timed(calls, fn))
        figures["call"].append(timed(calls, whole_call))
    return {name: statistics.median(values) for name, values in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:55432/rls_screen")
    args = parser.parse_args()
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(args.postgres, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            targets = [
                ("SQLite (WAL file)", str(Path(tmp) / "bench.sqlite3")),
                ("PostgreSQL (local, TCP)", f"{args.postgres}?options={quote(f'-csearch_path={schema}')}"),
            ]
            for label, url in targets:
                db = open_database(parse_state_url(url))
                try:
                    result = measure(db, args.calls, args.rounds, args.candidates)
                finally:
                    db.close()
                rows.append(
                    f"| {label} | {result['per']:.0f} | {result['one']:.0f} | {result['per'] / result['one']:.1f} "
                    f"| {result['call']:.0f} |"
                )
    finally:
        with psycopg.connect(args.postgres, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
    print(
        f"| store | suppression, one query per candidate (µs/call, {args.candidates} candidates) | one query (µs/call) "
        "| ratio | whole call: replay check + suppression + record cards (µs/call) |"
    )
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
