"""HTTP routes of the console: ``api`` (JSON under /api/v1) and ``pages`` (HTML)."""
