"""Batch screening of a patient panel: sources, a resumable job store, the runner, the report."""
