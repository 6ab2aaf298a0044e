"""Redis state: job records and their transitions, the shared limiter, key names, job states.

``keys`` (every key name), ``states`` (the state machine's sets), ``records`` (reading a job
record, the typed ``JobView``), ``jobstore`` (transitions), ``limiter`` (rate limit, fair grants,
in-flight caps, pauses), ``scripts`` (the Lua in ``lua/``).  Nothing here imports Celery or talks HTTP.
"""
