"""Peer queues, each measured by a script that runs in the suite's own virtual environment
(``benchmarks/.peer-venv``), never in relaybox's: they are not relaybox dependencies."""
