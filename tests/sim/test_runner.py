import cocotb_tools.runner as cocotb_runner
import pytest

from edge3u.rtl.pe import PE
from edge3u.sim import runner
from edge3u.sim.runner import SimError, build


@pytest.mark.parametrize("jobs, expected", [(1, 1), (None, cocotb_runner.MAX_PARALLEL_BUILD_JOBS)])
def test_a_build_compiles_with_at_most_the_jobs_it_is_given(tmp_path, monkeypatch, jobs,
                                                            expected):
    seen = []

    class Recording(runner._top_ports_runner_class()):
        def build(self, **kwargs):  # make -j reads this cap while the command is built
            seen.append(cocotb_runner._get_max_parallel_build_jobs())
            raise RuntimeError("stopped after the command")

    monkeypatch.setattr(runner, "_TopPortsVerilator", Recording)
    default = cocotb_runner.MAX_PARALLEL_BUILD_JOBS
    with pytest.raises(SimError, match="stopped after the command"):
        build(PE(4, 2, 8), "pe", root=tmp_path, jobs=jobs)
    assert seen == [min(expected, cocotb_runner._get_max_parallel_build_jobs())]
    assert cocotb_runner.MAX_PARALLEL_BUILD_JOBS == default  # restored, also after a failure
