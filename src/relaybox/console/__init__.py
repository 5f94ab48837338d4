"""The operator console: ``relaybox serve``, a live web dashboard and a JSON API (spec C9).

``app.create_app(store, settings)`` builds one ASGI application: server-rendered pages (with
htmx, shipped in ``static/``, no build step), a JSON API under ``/api/v1`` with its OpenAPI
document at ``/openapi.json``, and a server-sent event stream that tells open pages when the
store changed. Every read goes through the store's read path; every action goes through the
outbox's transitions, so the console can do nothing the CLI cannot.

Modules: ``filters`` (query strings to filters, bad ones to 400), ``queries`` (read units),
``charts`` (SVG), ``bulk`` (bulk retry/cancel, shared with the CLI), ``auth`` (credentials,
roles, sessions, CSRF), ``live`` (the change feed), ``routes/`` (pages, API).
"""
