"""The study: its file (schema, space, grid, scales, rules), its record in the storage,
samplers and pruners by name, the stop rule, warm starts, and the confirmation's plan
and ranking. Nothing here runs a trial (:mod:`hpsearch.run` does)."""
