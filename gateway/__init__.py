"""The reference gateway: a policy enforcement point in front of the protected database.

:class:`Gateway` holds the four operations (read, search, update, disclose) over injected
collaborators; :func:`create_router` exposes them over HTTP.
"""

from gateway.context import ContextResolver, Site, load_sites
from gateway.gateway import CALLER, SYSTEM, Caller, Gateway
from gateway.routes import create_router

__all__ = ["CALLER", "SYSTEM", "Caller", "ContextResolver", "Gateway", "Site", "create_router", "load_sites"]
