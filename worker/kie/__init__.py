"""kie.ai itself: the HTTP client (``client``) and the marshmallow schemas of everything sent to it or
received from it (``schemas``).  Knows nothing of Celery, Redis or jobs."""
