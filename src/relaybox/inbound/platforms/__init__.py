"""Inbound webhook endpoints of the chat platforms: signature check, parsing, the answer.

One module per platform; each transport kind points at its endpoint (``TransportKind.inbound``),
and :mod:`relaybox.inbound.webhooks` serves them all.
"""
