"""Preflight: is the server type offered at the location (per the API), with the image, and at what cost?

Nothing is created here; only GET requests. When the type is not offered at the location (ARM/CAX
types have been offered only in EU locations; the seed asks for Ashburn), the Unavailable problem
lists what the API offers instead: the same type elsewhere, and the cheapest types at the location,
each with its monthly gross price and currency as the API reports them.
"""

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Dict, List, Optional

from hcloud import Client

from tasks.hcloud_standby.config import StandbySpec
from tasks.hcloud_standby.errors import Unavailable, during

CHEAPEST_SHOWN = 5


@dataclass(frozen=True)
class Offer:
    """What the preflight found: the API's objects for type, location and image, and the prices."""

    server_type: Any
    location: Any
    image: Any
    monthly: Decimal
    currency: str
    ipv4_monthly: Optional[Decimal] = None

    def cost_line(self) -> str:
        """One line with the monthly cost of the type at the location (and of its primary IPv4)."""
        price = money(self.monthly, self.currency)
        line = f"{self.server_type.name} in {self.location.name}: {price} (gross)"
        if self.ipv4_monthly is not None:
            line += f", plus {money(self.ipv4_monthly, self.currency)} for the primary IPv4"
        return line


def money(amount: Decimal, currency: str) -> str:
    """E.g. ``4.51 EUR/month``: the API's decimal string, rounded to cents."""
    return f"{amount.quantize(Decimal('0.01'))} {currency}/month"


def _gross(price: Optional[Dict[str, Any]]) -> Optional[Decimal]:
    try:
        return Decimal(str(price["price_monthly"]["gross"])) if price else None
    except (KeyError, TypeError, InvalidOperation):
        return None


def monthly_gross(server_type: Any, location_name: str) -> Optional[Decimal]:
    """The monthly gross price of `server_type` at `location_name`, or None when the API lists none."""
    for price in server_type.prices or []:
        if price.get("location") == location_name:
            return _gross(price)
    return None


def is_offered(server_type: Any, location_name: str, now: Optional[datetime] = None) -> bool:
    """True when the API lists the type at the location as available, not past deprecation, with a price."""
    now = now or datetime.now(timezone.utc)
    if monthly_gross(server_type, location_name) is None:
        return False
    if server_type.locations is None:  # an API answer without per-location details: prices decide
        return True
    for entry in server_type.locations:
        if entry.location.name != location_name:
            continue
        gone = entry.deprecation is not None and entry.deprecation.unavailable_after is not None
        return entry.available is not False and not (gone and entry.deprecation.unavailable_after <= now)
    return False


def describe_type(server_type: Any) -> str:
    """E.g. ``cpx11 (x86, 2 vCPU, 2 GB RAM, 40 GB disk)``."""
    return (
        f"{server_type.name} ({server_type.architecture}, {server_type.cores} vCPU, "
        f"{server_type.memory:g} GB RAM, {server_type.disk} GB disk)"
    )


def _pricing(client: Client) -> Dict[str, Any]:
    return client.request("GET", "/pricing")["pricing"]


def _ipv4_monthly(pricing: Dict[str, Any], location_name: str) -> Optional[Decimal]:
    for kind in pricing.get("primary_ips") or []:
        if kind.get("type") == "ipv4":
            for price in kind.get("prices") or []:
                if price.get("location") == location_name:
                    return _gross(price)
    return None


def _alternatives(types: List[Any], spec: StandbySpec, locations: Dict[str, Any], currency: str) -> str:
    same = sorted(
        (monthly_gross(t, name), name)
        for t in types
        if t.name == spec.server_type
        for name in locations
        if name != spec.location and is_offered(t, name)
    )
    here = sorted(
        ((monthly_gross(t, spec.location), t.name), t) for t in types if is_offered(t, spec.location)
    )[:CHEAPEST_SHOWN]
    lines = [f"  {spec.server_type} in other locations:"]
    lines += [f"    {spec.server_type} in {name} ({locations[name].description}): {money(p, currency)}"
              for p, name in same] or ["    (none)"]
    lines.append(f"  cheapest types offered in {spec.location}:")
    lines += [f"    {describe_type(t)}: {money(p, currency)}" for (p, _), t in here] or ["    (none)"]
    return "\n".join(lines)


def check(client: Client, spec: StandbySpec) -> Offer:
    """The Offer for `spec`, or Unavailable listing what the API offers instead."""
    with during("reading locations, server types and prices"):
        locations = {location.name: location for location in client.locations.get_all()}
        if spec.location not in locations:
            raise Unavailable(
                f"location {spec.location!r} does not exist; the API offers: {', '.join(sorted(locations))}"
            )
        pricing = _pricing(client)
        currency = pricing.get("currency") or "?"
        server_type = client.server_types.get_by_name(spec.server_type)
        if server_type is None or not is_offered(server_type, spec.location):
            types = client.server_types.get_all()
            what = "does not exist" if server_type is None else "is not offered"
            raise Unavailable(
                f"server type {spec.server_type!r} {what} in {spec.location} "
                f"({locations[spec.location].description}) according to the Hetzner API; nothing was "
                f"created. Prices are monthly, gross, as the API reports them:\n"
                f"{_alternatives(types, spec, locations, currency)}\n"
                f"  Choose one: set hetzner.server_type / hetzner.location in {spec.settings_file}, "
                f"or pass --server-type / --location."
            )
        image = client.images.get_by_name_and_architecture(spec.image, server_type.architecture)
        if image is None:
            raise Unavailable(
                f"image {spec.image!r} is not offered for {server_type.architecture} "
                f"(needed by {spec.server_type}); set hetzner.image in {spec.settings_file}"
            )
    return Offer(
        server_type=server_type,
        location=locations[spec.location],
        image=image,
        monthly=monthly_gross(server_type, spec.location),
        currency=currency,
        ipv4_monthly=_ipv4_monthly(pricing, spec.location),
    )
