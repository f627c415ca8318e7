"""The web dashboard and JSON API (FastAPI): :func:`stormwatch.web.app.create_app`.

Nothing in the library imports this package; it is a thin shell over ``threat``, ``analytics``
and ``store``, like the CLI.
"""
