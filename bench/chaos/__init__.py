"""The fault-injection suite: ``python -m bench.chaos --jobs 300 --broker redis|amqp [--hosts netns]
[--failover] [--seed S]``.

Modules: ``servers`` (private Redis with AOF, Sentinel group, RabbitMQ vhost), ``netns`` (worker hosts
as network namespaces), ``deployment`` (the processes and handles to break them), ``checker`` (the
checking task at the end of every chain), ``schedule`` (the seeded fault plan), ``run`` (one run),
``report`` (per-job outcome, the row and its verdict), ``cli`` (the command line).
"""
