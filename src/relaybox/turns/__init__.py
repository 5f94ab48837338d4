"""Agent turns: one durable unit per inbound message (record, run, reply), resumed after a
crash. See docs/turns.md; the state machine is in :mod:`relaybox.turns.transitions`."""
