"""Test kit for relaybox users and transport authors (no internet needed).

* :mod:`relaybox.testing.loopback`: a real HTTP webhook receiver on loopback.
* :mod:`relaybox.testing.contract`: the behaviours every transport must show, as checks a
  plugin author runs against their own transport and fake.
* :mod:`relaybox.testing.fakes`: local fakes of Telegram, Slack, Discord and Twilio's HTTP
  APIs (ASGI apps served on a loopback port), which the adapters are pointed at through their
  base-URL settings.
"""
