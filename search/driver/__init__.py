"""Everything of a search that touches Ray: preflight (no Ray yet), the local Ray and its reaper, the Tuner,
the trainable, the searcher and its Optuna journal, the callbacks, signing, the results table.

Modules here import Ray at the top: import them after `search.driver.compat.loopback_only()` (the entry
points do), except preflight, files, storage, trust, faults, study and compat, which import no Ray.
"""
