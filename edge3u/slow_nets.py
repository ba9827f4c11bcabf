"""What to pipeline next: nextpnr's per-endpoint arrival times, grouped by net.

``nextpnr --detailed-timing-report`` lists, for every net, the arrival time of the signal at
each of its endpoints. Nets that come in families (``drain0 … drain319``, ``heads[0] …``) are
grouped under their name with every run of digits replaced by ``#``, so the summary names the
structures that are late, how late their worst endpoint is and how many endpoints they make
late, rather than one path out of thousands.
"""

from __future__ import annotations

import re

__all__ = ["slow_nets"]


def slow_nets(report: dict, clock_mhz: float, limit: int = 10) -> dict:
    """Summary of a nextpnr report (``--report`` with ``--detailed-timing-report``).

    Returns ``endpoints`` (all timed endpoints), ``late_endpoints`` (those whose signal arrives
    after one period of ``clock_mhz``) and ``slowest_nets``: up to ``limit`` groups of nets with
    late endpoints, slowest first, each ``{"net", "arrival_ns", "late_endpoints"}``. Without
    the detailed timings (an older report) the counts are None and the list empty.
    """
    nets = report.get("detailed_net_timings")
    if nets is None:
        return {"endpoints": None, "late_endpoints": None, "slowest_nets": []}
    period = 1000.0 / clock_mhz
    endpoints, groups = 0, {}
    for net in nets:
        name = re.sub(r"\d+", "#", net["net"])
        for end in net["endpoints"]:
            endpoints += 1
            arrival = max(end["delay"])
            if arrival <= period:
                continue
            worst, count = groups.get(name, (0.0, 0))
            groups[name] = (max(worst, arrival), count + 1)
    ranked = sorted(groups.items(), key=lambda item: -item[1][0])
    return {"endpoints": endpoints,
            "late_endpoints": sum(count for _, count in groups.values()),
            "slowest_nets": [{"net": name, "arrival_ns": round(worst, 2), "late_endpoints": count}
                             for name, (worst, count) in ranked[:limit]]}
