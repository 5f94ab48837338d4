"""relaybox's benchmark suite: ``python -m benchmarks`` (or ``bash benchmarks/run.sh``).

Every figure is measured on this machine in one run, next to the raw commit rate of the same
store and next to peer queues on the same PostgreSQL server, so ratios compare like with like.
"""
