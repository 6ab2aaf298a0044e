"""The ``kie-queue`` command line (``main``), the demo (``demo``) and starting a local deployment as real
processes (``stack``, also used by the end-to-end tests and the benchmarks)."""
