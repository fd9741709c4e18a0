"""Preflight: is the server type offered at the location (per the API), with the image, and at what cost?

Nothing is created here; only GET requests. When the type is not offered at the location (ARM/CAX
types have been offered only in EU locations; the seed asks for Ashburn), the Unavailable problem
lists what the API offers instead: the same type elsewhere, and the cheapest types at the location,
each with its monthly gross price and currency as the API reports them. The same list follows a
capacity error on create (resource_unavailable, placement_error).

Deprecations: the API marks a server type whose end is announced with a ``deprecation`` object
(``announced``, ``unavailable_after``), per location (``locations[].deprecation``) and, in older
answers, on the type itself. A deprecated type is never proposed as an alternative (the list says
which were left out, with their dates), and choosing one gives a warning with its dates (e.g. CPX
Gen 1 and CX Gen 2: announced 2025-10-16, removed at the end of 2025). Past ``unavailable_after``
the type is not offered at all.
"""

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Dict, List, Optional

from hcloud import Client

from tasks.hetzner_cloud.config import StandbySpec
from tasks.hetzner_cloud.errors import Unavailable, during

CHEAPEST_SHOWN = 5


def deprecation_of(server_type: Any, location_name: str) -> Optional[Any]:
    """The type's DeprecationInfo at the location (else the type-wide one), or None when not deprecated."""
    for entry in server_type.locations or []:
        if entry.location.name == location_name and entry.deprecation is not None:
            return entry.deprecation
    return getattr(server_type, "_deprecation", None)  # the older, type-wide field (no DeprecationWarning)


def _date(moment: Optional[datetime]) -> str:
    return moment.date().isoformat() if moment is not None else "?"


def deprecation_text(server_type: Any, location_name: str) -> str:
    """E.g. ``deprecated: announced 2025-10-16, unavailable after 2025-12-31``; '' when not deprecated."""
    info = deprecation_of(server_type, location_name)
    if info is None:
        return ""
    return f"deprecated: announced {_date(info.announced)}, unavailable after {_date(info.unavailable_after)}"


@dataclass(frozen=True)
class Offer:
    """What the preflight found: the API's objects for type, location and image, and the prices."""

    server_type: Any
    location: Any
    image: Any
    monthly: Decimal
    currency: str
    ipv4_monthly: Optional[Decimal] = None
    deprecation: str = ""  # deprecation_text of the chosen type here ('' when it is not deprecated)
    alternatives: str = ""  # what _alternatives lists, when the chosen type is deprecated

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
    info = deprecation_of(server_type, location_name)
    if info is not None and info.unavailable_after is not None and info.unavailable_after <= now:
        return False
    if server_type.locations is None:  # an API answer without per-location details: prices decide
        return True
    return any(entry.location.name == location_name and entry.available is not False
               for entry in server_type.locations)


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
    """The chosen type in other locations and the cheapest types at the chosen location, deprecated
    ones left out (named with their dates)."""
    current = [t for t in types if t.name == spec.server_type]
    same = sorted(
        (monthly_gross(t, name), name)
        for t in current
        for name in locations
        if name != spec.location and is_offered(t, name) and not deprecation_of(t, name)
    )
    offered = [t for t in types if is_offered(t, spec.location) and t.name != spec.server_type]
    here = sorted(
        ((monthly_gross(t, spec.location), t.name), t) for t in offered if not deprecation_of(t, spec.location)
    )[:CHEAPEST_SHOWN]
    left_out = sorted(f"{t.name} ({deprecation_text(t, spec.location)})"
                      for t in offered if deprecation_of(t, spec.location))
    lines = [f"  {spec.server_type} in other locations:"]
    lines += [f"    {spec.server_type} in {name} ({locations[name].description}): {money(p, currency)}"
              for p, name in same] or ["    (none)"]
    lines.append(f"  cheapest types offered in {spec.location}:")
    lines += [f"    {describe_type(t)}: {money(p, currency)}" for (p, _), t in here] or ["    (none)"]
    if left_out:
        lines.append(f"  not proposed, deprecated in {spec.location}: {'; '.join(left_out)}")
    return "\n".join(lines)


def alternatives(client: Client, spec: StandbySpec) -> str:
    """The alternatives `plan` lists for `spec` (after a capacity error on create, for instance)."""
    with during("reading locations, server types and prices for alternatives"):
        locations = {location.name: location for location in client.locations.get_all()}
        currency = _pricing(client).get("currency") or "?"
        return _alternatives(client.server_types.get_all(), spec, locations, currency)


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
            gone = "" if server_type is None else deprecation_text(server_type, spec.location)
            raise Unavailable(
                f"server type {spec.server_type!r} {what} in {spec.location} "
                f"({locations[spec.location].description}){f' ({gone})' if gone else ''} according to the "
                f"Hetzner API; nothing was "
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
        deprecation = deprecation_text(server_type, spec.location)
        other = _alternatives(client.server_types.get_all(), spec, locations, currency) if deprecation else ""
    return Offer(
        server_type=server_type,
        location=locations[spec.location],
        image=image,
        monthly=monthly_gross(server_type, spec.location),
        currency=currency,
        ipv4_monthly=_ipv4_monthly(pricing, spec.location),
        deprecation=deprecation,
        alternatives=other,
    )
