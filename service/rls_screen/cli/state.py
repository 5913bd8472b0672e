"""``rls-screen state status|migrate``: the state store's components and schema versions, and their upgrade.

``status`` names each database (without a password) and, per component (``rls_screen.state.components``),
the version recorded and the one this release reads. Exit 0: every component is up to date; 1: ``migrate``
has work to do (a component is new, older, or an earlier release's tables await adoption); 3: a component
is newer than this release (use the release that wrote it).

``migrate`` brings every component up to date: what a Helm pre-upgrade hook runs before new pods start
(each store also migrates itself when it opens, so a first run needs nothing). Without
``RLS_SCREEN_STATE_URL`` each component lives in its own default SQLite file, and that is what both act on.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rls_screen.errors import ConfigurationError
from rls_screen.settings import get_settings
from rls_screen.state import StateTarget, migrate, open_database, recorded_versions, state_target
from rls_screen.state.components import Component, components

UP_TO_DATE, WORK_TO_DO, NEWER = 0, 1, ConfigurationError.exit_code


def _by_target() -> dict[StateTarget, list[Component]]:
    url = get_settings().state_url_text()
    grouped: dict[StateTarget, list[Component]] = {}
    for component in components():
        grouped.setdefault(state_target(url, component.default_file()), []).append(component)
    return grouped


def _recorded(target: StateTarget) -> dict[str, int] | None:
    """The versions recorded at ``target``; None for an SQLite file not created yet (left uncreated)."""
    if target.dialect == "sqlite" and not target.path.exists():
        return None
    db = open_database(target, pool_size=1)
    try:
        return recorded_versions(db)
    finally:
        db.close()


def status_lines(target: StateTarget, members: Sequence[Component], recorded: dict[str, int] | None) -> list[str]:
    lines = [f"{target.described()} ({target.dialect})" + ("  [file not created yet]" if recorded is None else "")]
    width = max(len(name) for name in [c.name for c in members] + list(recorded or {}))
    for component in members:
        found = (recorded or {}).get(component.name)
        if found is None:
            state = f"not recorded; this release: {component.latest} (migrate creates it or adopts earlier tables)"
        elif found == component.latest:
            state = f"{found}, up to date"
        elif found < component.latest:
            state = f"{found}; this release migrates it to {component.latest}"
        else:
            state = f"{found}, NEWER than this release reads ({component.latest}): use the release that wrote it"
        lines.append(f"  {component.name:<{width}}  {state}")
    known = {c.name for c in members}
    lines.extend(
        f"  {name:<{width}}  {version} (not a component of this release, or kept elsewhere)"
        for name, version in sorted((recorded or {}).items())
        if name not in known
    )
    return lines


def run_status(args: argparse.Namespace) -> int:
    code = UP_TO_DATE
    for target, members in _by_target().items():
        recorded = _recorded(target)
        print("\n".join(status_lines(target, members, recorded)))
        for component in members:
            found = (recorded or {}).get(component.name)
            if found is not None and found > component.latest:
                code = NEWER
            elif code == UP_TO_DATE and found != component.latest:
                code = WORK_TO_DO
    return code


def run_migrate(args: argparse.Namespace) -> int:
    for target, members in _by_target().items():
        print(f"{target.described()} ({target.dialect})")
        db = open_database(target, pool_size=1)
        try:
            for component in members:
                before = migrate(db, component.name, component.steps, adopt=component.adopt)
                after = recorded_versions(db).get(component.name, 0)
                change = "up to date" if before == after else f"migrated from {before or 'nothing'}"
                print(f"  {component.name}: {after} ({change})")
        finally:
            db.close()
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "state",
        help="the state store: schema status, and migrating it before an upgrade",
        description="The state store (RLS_SCREEN_STATE_URL, else each part's SQLite file under the state "
        "directory): CDS feedback, JWT replay cache, batch jobs, re-screen queue, --since marks. docs/state.md.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    status = actions.add_parser(
        "status",
        help="components and schema versions (exit 0 up to date, 1 migrate has work, 3 newer than this release)",
    )
    status.set_defaults(run=run_status)
    upgrade = actions.add_parser(
        "migrate", help="bring every component to this release's schema (adopting or refusing)"
    )
    upgrade.set_defaults(run=run_migrate)
