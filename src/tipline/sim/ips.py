"""IPv4 addresses that geolocate to a chosen country or US state.

Addresses come from ``data/sim/networks.csv``: networks sampled from the DB-IP City Lite
database (CC BY 4.0, https://db-ip.com) by ``tipline.sim.networks``, keyed ``CC`` per
country and ``US-XX`` per US state. Looking an address up in that database gives back the
key it was drawn for.
"""

from __future__ import annotations

import csv
import ipaddress
from collections import defaultdict
from functools import cache
from pathlib import Path

from tipline.sim.calibration import DATA

NETWORKS_CSV = DATA / "networks.csv"


@cache
def networks(path: Path = NETWORKS_CSV) -> dict[str, list[tuple[int, int]]]:
    """key -> [(first address as int, number of addresses)], in file order."""
    out: dict[str, list[tuple[int, int]]] = defaultdict(list)
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            net = ipaddress.ip_network(row["network"])
            out[row["key"]].append((int(net.network_address), net.num_addresses))
    return dict(out)


def location_key(country: str, us_state: str | None = None) -> str:
    return f"US-{us_state}" if country == "US" and us_state else country


def has_networks(key: str) -> bool:
    return key in networks()


def address(key: str, draw: int) -> str:
    """A deterministic address in one of ``key``'s networks, chosen by the integer ``draw``."""
    nets = networks()[key]
    first, size = nets[draw % len(nets)]
    # Skip the network and broadcast addresses of ordinary subnets.
    offset = 0 if size <= 2 else 1 + (draw // len(nets)) % (size - 2)
    return str(ipaddress.IPv4Address(first + offset))
