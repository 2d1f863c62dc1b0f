"""What fastgru's benchmarks share: the scripts in ``bench/`` and the ``fastgru bench`` command.

- `fastgru.benchmark.timing`: interleaved timing (warm-up, samples of at least ``sample_s``, rounds in
  an order drawn afresh each round, median and p90 per call);
- `fastgru.benchmark.workers`: one fresh worker process per thread count, its thread pools pinned by
  environment variables before any import;
- `fastgru.benchmark.machine`: the CPU and fastgru's kernel table, named beside every figure.

Nothing here imports a framework; each worker imports what it times.
"""
