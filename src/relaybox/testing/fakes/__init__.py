"""Local fakes of the chat platforms' HTTP APIs (ASGI apps served on a loopback port).

:class:`~relaybox.testing.fakes.telegram.FakeTelegram`,
:class:`~relaybox.testing.fakes.slack.FakeSlack`,
:class:`~relaybox.testing.fakes.discord.FakeDiscord` and
:class:`~relaybox.testing.fakes.twilio.FakeTwilio` each record the wire and the user's screen
with arrival times, and can be scripted to fail (see :mod:`relaybox.testing.fakes.base`).
"""
