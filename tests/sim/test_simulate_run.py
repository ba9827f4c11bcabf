import pytest

from edge3u.runs import RunError
from edge3u.sim.simulate_run import simulate_run


@pytest.mark.parametrize("cores", [0, -2, 1.5])
def test_a_bad_core_count_is_refused_before_any_work(tmp_path, cores):
    with pytest.raises(RunError, match=f"cores must be a positive integer, not {cores!r}"):
        simulate_run(tmp_path / "no-such-run", images=10, cores=cores)
