"""Run scenarios on this rank: ``mpiexec -n N python tests/dist_scenarios/worker.py SCENARIO...`` (all but
the ones that end the job on purpose when none is named). Launched by tests/test_distributed.py."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(os.path.dirname(HERE)), os.path.dirname(HERE)]   # the repository, tests/

from dist_scenarios import collectives, failures, gradients, sampler, training, wrapper  # noqa: E402,F401 (register)
from dist_scenarios.harness import ON_PURPOSE, SCENARIOS, main                            # noqa: E402

if __name__ == "__main__":
    main(sys.argv[1:] or [n for n in SCENARIOS if n not in ON_PURPOSE])
