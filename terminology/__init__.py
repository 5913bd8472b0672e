"""Shipped FHIR ValueSets, CodeSystems and ConceptMaps (data only; loaded by rls_screen.terminology)."""
