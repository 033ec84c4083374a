"""Benchmarks of the targets in docs/architecture.md: ``python -m tests.benchmarks [--quick] [--json PATH]``.

Run on purpose, never as timed unit tests. Each scenario runs in its own worker process (so its CPU time and
peak RSS are its own) against DTMA simulators in yet another process (so the simulator's CPU is not counted
as the reconciler's). ``test_quick.py`` runs ``--quick`` in the normal suite so the benchmark never rots.
"""
