"""Device and context of a gateway request, from the documented headers (the device-posture service
or the trusted proxy sets them; a missing header counts as the least-trusted value)."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from fastapi import Header, Request
from pydantic import ValidationError

from contracts.decision import Context, Device
from gateway.problems import invalid


def bool_header(request: Request, name: str) -> bool:
    raw = request.headers.get(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise invalid(f"header.{name}", "must be true or false")


def device_and_context(request: Request) -> tuple[Device, Context]:
    """Device posture and context from the documented headers; bad values are a 422 naming the header."""
    device_id = request.headers.get("x-device-id", "unknown")
    try:
        device = Device(id=device_id, managed=bool_header(request, "X-Device-Managed"),
                        compliant=bool_header(request, "X-Device-Compliant"))
    except ValidationError:
        raise invalid("header.X-Device-Id", "1–128 characters of A-Z a-z 0-9 _ . : - /") from None
    geo = None
    raw_geo = request.headers.get("x-geo")
    if raw_geo is not None:
        lat, sep, lon = raw_geo.partition(",")
        try:
            if not sep:
                raise ValueError
            geo = {"lat": float(lat), "lon": float(lon)}
        except ValueError:
            raise invalid("header.X-Geo", "must be 'lat,lon' in decimal degrees") from None
    peer = request.client.host if request.client else None
    try:
        ip = str(ipaddress.ip_address(peer)) if peer else None
    except ValueError:  # e.g. a unix socket or a test client: no address to report
        ip = None
    values = {"ip": ip, "network_zone": request.headers.get("x-network-zone", "internet").strip().lower(),
              "channel": request.headers.get("x-channel", "gateway"), "geo": geo}
    try:
        context = Context.model_validate(values)
    except ValidationError as exc:
        first = str(exc.errors()[0]["loc"][0]) if exc.errors() else "context"
        header = {"network_zone": "X-Network-Zone", "channel": "X-Channel", "geo": "X-Geo"}.get(first, first)
        raise invalid(f"header.{header}", {"X-Network-Zone": "one of internal, vpn, exchange, internet",
                                            "X-Channel": "1–128 characters of A-Z a-z 0-9 _ . : - /",
                                            "X-Geo": "lat in [-90, 90], lon in [-180, 180]"}
                       .get(header, "invalid")) from None
    return device, context


def documented_headers(
    x_device_id: Annotated[str | None, Header(alias="X-Device-Id", description=(
        "device identifier from the bureau's device-posture service (default: unknown)"))] = None,
    x_device_managed: Annotated[str | None, Header(alias="X-Device-Managed", description=(
        "true|false: enrolled in the bureau's MDM (default false)"))] = None,
    x_device_compliant: Annotated[str | None, Header(alias="X-Device-Compliant", description=(
        "true|false: passes the posture baseline (default false)"))] = None,
    x_network_zone: Annotated[str | None, Header(alias="X-Network-Zone", description=(
        "internal|vpn|exchange|internet, set by the trusted proxy (default internet)"))] = None,
    x_channel: Annotated[str | None, Header(alias="X-Channel", description=(
        "calling channel, e.g. counter, eservice, call_center (default gateway)"))] = None,
    x_geo: Annotated[str | None, Header(alias="X-Geo", description="lat,lon of the client (optional)")] = None,
) -> None:
    """Declares the device/context headers in the OpenAPI document. They are parsed in one place,
    :func:`device_and_context`, which names the header at fault."""


def via(context: Context) -> dict[str, str]:
    via = {"channel": context.channel}
    if context.ip is not None:
        via["ip"] = str(context.ip)
    return via
