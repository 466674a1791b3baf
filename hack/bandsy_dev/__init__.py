"""Development harness: real local servers (control plane, PostgreSQL, Redis) on loopback.

Used by the test suite, ``make cluster-up``/``make run`` and the benchmarks. Nothing here is
shipped with the operator.
"""
