"""Device and context of a gateway request: from the connection and from credentials, never from
what the end user says about themselves.

Where each input comes from (docs/security.md lists the tests that hold each):

* **client address** — the connection's peer. ``X-Forwarded-For`` is read only when the peer is one
  of ``ZTCP_TRUSTED_PROXIES`` (addresses or CIDR ranges); the client is then the right-most address
  in it that is not itself a trusted proxy.
* **network zone** — ``X-Network-Zone`` from a trusted proxy; otherwise the client address looked
  up in ``ZTCP_NETWORK_ZONES`` (CIDR ranges per zone); otherwise ``internet``.
* **location** — ``X-Geo`` from a trusted proxy; otherwise the client address looked up in the
  site table (``ZTCP_SITES_FILE``: the bureau's offices and their networks); otherwise *unknown*,
  which the PDP scores as a named risk factor (``location_unknown``), never a skipped check.
* **channel** — ``X-Channel`` from a trusted proxy; otherwise ``gateway``.
* **device** — :class:`pdp.devices.DeviceAuthenticator`: a device certificate passed on by a trusted
  proxy (``X-Client-Cert``), a signed posture assertion (``X-Device-Posture``, from anyone: it is
  signed), or a device id a trusted proxy vouches for (``X-Device-Id``); posture only from the
  assertion or the inventory. ``X-Device-Managed`` / ``X-Device-Compliant`` are never believed.

A header that is not believed is ignored, so a client adding ``X-Network-Zone: internal`` gets
exactly what it would without it. A credential that is presented but fails (forged, expired,
another device's) is refused with 401: the client should know its device credential is bad.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Header, Request
from pydantic import ValidationError

from contracts.decision import Context, Device
from gateway.problems import invalid
from pdp.devices import DeviceAuthenticator, DeviceError, DevicePostureError
from pdp.problems import Problem

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
ZONES = ("internal", "vpn", "exchange", "internet")
DEFAULT_CHANNEL = "gateway"


@dataclass(frozen=True)
class Site:
    """One of the bureau's sites (an office, a data centre) and the networks its clients come from."""

    name: str
    lat: float
    lon: float
    networks: tuple[Network, ...]


def parse_networks(values: Iterable[str], what: str) -> tuple[Network, ...]:
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError:
            raise ValueError(f"{what}: {value!r} is not an address or CIDR range") from None
    return tuple(out)


def load_sites(path: Path) -> tuple[Site, ...]:
    """The site table: a JSON list of ``{"name", "lat", "lon", "networks": [CIDR, …]}``."""
    try:
        rows = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"site table {path}: {exc}") from None
    if not isinstance(rows, list):
        raise ValueError(f"site table {path}: expected a JSON list of sites")
    sites = []
    for i, row in enumerate(rows):
        try:
            lat, lon = float(row["lat"]), float(row["lon"])
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ValueError("lat/lon out of range")
            sites.append(Site(str(row["name"]), lat, lon, parse_networks(row["networks"], f"site {row['name']}")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"site table {path}: entry {i}: {exc}") from None
    return tuple(sites)


def _address(value: str | None) -> Address | None:
    if not value:
        return None
    try:
        return ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None


def _within(addr: Address | None, networks: Sequence[Network]) -> bool:
    return addr is not None and any(addr.version == n.version and addr in n for n in networks)


class ContextResolver:
    """Turns a request into the (device, context) the PDP decides on, believing only what is proven."""

    def __init__(self, *, trusted_proxies: Iterable[str] = (), zones: Mapping[str, Iterable[str]] | None = None,
                 sites: Sequence[Site] = (), devices: DeviceAuthenticator | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.trusted = parse_networks(trusted_proxies, "ZTCP_TRUSTED_PROXIES")
        unknown = sorted(set(zones or {}) - set(ZONES))
        if unknown:
            raise ValueError(f"ZTCP_NETWORK_ZONES: unknown zone(s) {', '.join(unknown)} (one of {', '.join(ZONES)})")
        # Most specific range first, so 10.1.2.0/24 "vpn" wins over 10.0.0.0/8 "internal".
        self.zones = sorted(((net, zone) for zone, nets in (zones or {}).items()
                             for net in parse_networks(nets, f"ZTCP_NETWORK_ZONES.{zone}")),
                            key=lambda item: -item[0].prefixlen)
        self.sites = sorted(((net, site) for site in sites for net in site.networks), key=lambda i: -i[0].prefixlen)
        self.devices = devices or DeviceAuthenticator()
        self.clock = clock

    def from_trusted_proxy(self, request: Request) -> bool:
        return _within(_address(request.client.host if request.client else None), self.trusted)

    def client_address(self, request: Request) -> Address | None:
        peer = _address(request.client.host if request.client else None)
        if not _within(peer, self.trusted):
            return peer
        hops = [h for part in request.headers.getlist("x-forwarded-for") for h in part.split(",")]
        for hop in reversed(hops):  # right to left: the nearest hop first; our own proxies are skipped
            addr = _address(hop)
            if addr is None:
                return peer  # a malformed hop: stop believing the chain there
            if not _within(addr, self.trusted):
                return addr
        return peer

    def zone_of(self, addr: Address | None) -> str:
        for net, zone in self.zones:
            if _within(addr, (net,)):
                return zone
        return "internet"

    def site_of(self, addr: Address | None) -> Site | None:
        for net, site in self.sites:
            if _within(addr, (net,)):
                return site
        return None

    def resolve(self, request: Request) -> tuple[Device, Context]:
        proxied = self.from_trusted_proxy(request)
        headers = request.headers
        addr = self.client_address(request)
        device = self._device(request, proxied)
        zone = headers.get("x-network-zone") if proxied else None
        if zone is not None and zone.strip().lower() not in ZONES:
            raise invalid("header.X-Network-Zone", "one of internal, vpn, exchange, internet")
        geo = _geo(headers.get("x-geo")) if proxied else None
        if geo is None:
            site = self.site_of(addr)
            geo = {"lat": site.lat, "lon": site.lon} if site else None
        values = {"ip": str(addr) if addr else None,
                  "network_zone": zone.strip().lower() if zone else self.zone_of(addr),
                  "channel": (headers.get("x-channel") if proxied else None) or DEFAULT_CHANNEL, "geo": geo}
        try:
            context = Context.model_validate(values)
        except ValidationError as exc:
            first = str(exc.errors()[0]["loc"][0]) if exc.errors() else "context"
            header = {"channel": "X-Channel", "geo": "X-Geo"}.get(first, first)
            raise invalid(f"header.{header}", {"X-Channel": "1–128 characters of A-Z a-z 0-9 _ . : - /",
                                               "X-Geo": "lat in [-90, 90], lon in [-180, 180]"}
                          .get(header, "invalid")) from None
        return device, context

    def _device(self, request: Request, proxied: bool) -> Device:
        headers = request.headers
        claimed = headers.get("x-device-id") if proxied else None
        if claimed is not None and not _valid_id(claimed):
            raise invalid("header.X-Device-Id", "1–128 characters of A-Z a-z 0-9 _ . : - /")
        try:
            return self.devices.authenticate(
                certificate=headers.get("x-client-cert") if proxied else None,
                assertion=headers.get("x-device-posture"), proxied_id=claimed, now=self.clock()).device
        except (DeviceError, DevicePostureError) as exc:
            raise Problem(401, "Device credential refused", f"device credential refused: {exc.reason}",
                          type_="urn:ztcp:problem:device-credential", reasons=[f"device_{exc.reason}"],
                          headers={"WWW-Authenticate": 'Bearer realm="ztcp", error="invalid_device"'}) from None


def _valid_id(value: str) -> bool:
    try:
        Device(id=value)
    except ValidationError:
        return False
    return True


def _geo(raw: str | None) -> dict[str, float] | None:
    if raw is None:
        return None
    lat, sep, lon = raw.partition(",")
    try:
        if not sep:
            raise ValueError
        return {"lat": float(lat), "lon": float(lon)}
    except ValueError:
        raise invalid("header.X-Geo", "must be 'lat,lon' in decimal degrees") from None


def via(context: Context) -> dict[str, str]:
    out = {"channel": context.channel}
    if context.ip is not None:
        out["ip"] = str(context.ip)
    return out


def documented_headers(
    x_device_posture: Annotated[str | None, Header(alias="X-Device-Posture", description=(
        "signed device-posture assertion (JWT, typ device-posture+jwt) from the bureau's MDM/EDR service"))] = None,
    x_device_id: Annotated[str | None, Header(alias="X-Device-Id", description=(
        "device id; believed only from a trusted proxy (ZTCP_TRUSTED_PROXIES)"))] = None,
    x_client_cert: Annotated[str | None, Header(alias="X-Client-Cert", description=(
        "the device certificate the trusted proxy verified in mutual TLS (URL-encoded PEM)"))] = None,
    x_network_zone: Annotated[str | None, Header(alias="X-Network-Zone", description=(
        "internal|vpn|exchange|internet; believed only from a trusted proxy (else from ZTCP_NETWORK_ZONES)"))] = None,
    x_channel: Annotated[str | None, Header(alias="X-Channel", description=(
        "calling channel, e.g. counter, eservice; believed only from a trusted proxy (else gateway)"))] = None,
    x_geo: Annotated[str | None, Header(alias="X-Geo", description=(
        "lat,lon of the client; believed only from a trusted proxy (else from the site table)"))] = None,
) -> None:
    """Declares the device/context headers in the OpenAPI document. They are read in one place,
    :meth:`ContextResolver.resolve`, which names the header at fault."""
