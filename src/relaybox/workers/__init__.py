"""The live workers registry: which worker processes run, where, on what, and since when.

Each ``relaybox worker`` registers at start, heartbeats every ``[worker] heartbeat_seconds``
and deregisters at a clean stop (``transitions.py``); one that dies stops heartbeating and
ages out after ``[worker] dead_after_seconds``. ``relaybox workers`` and ``relaybox health``
read it (``inspect.py``).
"""
