"""Adapters that make agents written with a framework crash-safe through relaybox.

One module per framework, each importing its framework only when imported itself, so
``import relaybox`` never needs them:

* :mod:`relaybox.integrations.pydantic_ai` (``pip install 'relaybox[pydantic-ai]'``): a
  pydantic-ai durable-execution capability; model requests and tool calls become steps.
* :mod:`relaybox.integrations.openai_agents` (``pip install 'relaybox[openai-agents]'``): a
  journaled model, function tools as steps, and a ``Session`` on relaybox memory.

What each guarantees, and what not: docs/integrations.md.
"""
