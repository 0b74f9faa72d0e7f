"""The rank side of tests/test_distributed.py: scenarios run under
``mpiexec -n N python tests/dist_scenarios/worker.py SCENARIO...``, one module per topic.

- harness.py: the scenario registry, `check`, the cross-rank helpers, the per-rank JSON report, `main`.
- models.py: the models, the data, and `train_pair` (N ranks of DDP against one process on the whole batch).
- collectives.py: all_reduce/broadcast/all_gather over MPI, and the "nccl" backend over tests/fake_nccl.py.
- training.py: MLP and LeNet training equal to one process's; batch-norm buffers; no_sync accumulation.
- gradients.py: shared and unused layers, bucket order and overlap, gradient_as_bucket_view.
- wrapper.py: the first call (size agreement, rollback) and the wrapper's PyTorch surface (module, state_dict).
- sampler.py: DistributedSampler partitions.
- failures.py: a rank that raises in forward, a collective a rank never joins (both end the job on purpose).
"""
