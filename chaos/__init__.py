"""Black-box faults, workloads and checkers. Reaches members only through ``cluster``.

Modules: ``history`` (invoke/complete events), ``workload`` (register and list-append
clients), ``linearizable`` / ``appendcheck`` / ``checker`` / ``watchcheck`` (the checkers),
``faults`` (faults and the nemesis), ``observe`` (leader changes), ``scenarios`` and
``report`` (runs and their reports); ``python -m chaos`` is the CLI. See docs/chaos.md.
"""
