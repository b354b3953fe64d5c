"""The application's composition root: settings, bootstrap keys, the runtime that builds every
component once, readiness, backups and the ASGI app that ``ztcp serve`` runs.

Only this package knows where things come from (``ZTCP_HOME``, backend URLs, the sealed keyring);
the packages below it take explicit collaborators. Entry points: :class:`server.runtime.Runtime`,
:func:`server.app.create_app`, :func:`server.serve.serve`.
"""
