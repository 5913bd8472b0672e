"""Every component of the state store, for ``rls-screen state status`` and ``rls-screen state migrate``.

A component is one store's tables and their migration history: a name recorded in ``schema_migration``,
its ``Migration`` steps, the ``adopt`` function that recognises (or refuses) the tables of a release
before the migration table, and the SQLite file it keeps without ``RLS_SCREEN_STATE_URL``.

How a store joins (what the batch job store, re-screen queue and ``--since`` marks do too):

1. In the store's own module, define its steps and one module-level constant::

       STATE_COMPONENTS = (Component("batch-jobs", STEPS, adopt_batch_jobs, default_file=_default_file),)

   ``default_file`` takes no argument and reads the settings itself (it is only called by the CLI).
   The store migrates its own component when it opens (``migrate(db, c.name, c.steps, adopt=c.adopt)``),
   so ``state migrate`` is only needed before an upgrade (a Helm pre-upgrade hook), never for a first run.
2. Add the module's dotted name to ``STORE_MODULES`` below.

The modules are imported by name, lazily, so this package never imports the stores that use it;
tests/state/test_components.py migrates every registered component on both dialects, twice.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rls_screen.state.migrations import Adopt, Migration

# Modules defining STATE_COMPONENTS, in the order `state migrate` runs them.
STORE_MODULES: tuple[str, ...] = (
    "rls_screen.cds.feedback",
    "rls_screen.cds.replay",
    "rls_screen.batch.job_schema",
    "rls_screen.rescreen.queue",
    "rls_screen.rescreen.since",
)


@dataclass(frozen=True)
class Component:
    """One store's tables: ``name`` in ``schema_migration``, its steps, its ``adopt``, its own SQLite file."""

    name: str
    steps: Sequence[Migration]
    adopt: Adopt | None
    default_file: Callable[[], Path]

    @property
    def latest(self) -> int:
        return self.steps[-1].version if self.steps else 0


def components() -> list[Component]:
    """Every registered component (a ValueError when two share a name: their histories would mix)."""
    found: list[Component] = []
    for module_name in STORE_MODULES:
        module = importlib.import_module(module_name)
        found.extend(getattr(module, "STATE_COMPONENTS"))  # noqa: B009 - a module's declared constant
    names = [component.name for component in found]
    if len(names) != len(set(names)):
        raise ValueError(f"state components share a name: {sorted(names)}")
    return found
