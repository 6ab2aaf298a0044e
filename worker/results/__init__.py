"""Result files: the ``kie.download`` body (``downloading``), the safe download rules (``fetching``),
the address policy behind them (``netguard``) and where files are kept (``storage``).  No Celery."""
