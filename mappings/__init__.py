"""Shipped unit-conversion table and local-code ConceptMaps (data only; loaded by rls_screen.units)."""
