"""rls_screen: screens restless legs syndrome (RLS) patients for treatable secondary causes.

The package is layered so that clinical logic never touches I/O:

- ``engine`` (pure): observations + patient facts + as-of date -> ``Assessment``.
- ``knowledge``: the rule set, terminology and unit table the engine reads, loaded once (``Knowledge``).
- ``terminology`` / ``units`` / ``ruleset``: load the data files (ValueSets, ConceptMaps, unit
  table, versioned thresholds) that the engine reads; a site edits data, not code.
- ``fhir_client``: the one HTTP seam to a FHIR server (allowlist, retries, paging, auth).
- ``cli``: one module per subcommand of the ``rls-screen`` console script.
"""

__version__ = "0.1.0"
