from edge3u.slow_nets import slow_nets


def _net(name, *arrivals):
    return {"net": name, "endpoints": [{"delay": [a - 0.5, a]} for a in arrivals]}


def test_late_endpoints_are_counted_per_family_of_nets_slowest_first():
    report = {"detailed_net_timings": [
        _net("drain3", 12.0, 4.0), _net("drain17", 9.0), _net("heads[2]", 10.0, 11.0, 8.0),
        _net("swap", 6.0)]}
    got = slow_nets(report, clock_mhz=125.0)  # 8 ns: 8.0 arrives in time
    assert got["endpoints"] == 7 and got["late_endpoints"] == 4
    assert got["slowest_nets"] == [
        {"net": "drain#", "arrival_ns": 12.0, "late_endpoints": 2},
        {"net": "heads[#]", "arrival_ns": 11.0, "late_endpoints": 2}]


def test_a_report_without_detailed_timings_has_no_counts():
    assert slow_nets({"critical_paths": []}, 150.0) == {
        "endpoints": None, "late_endpoints": None, "slowest_nets": []}
