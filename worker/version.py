"""The project's version and the one User-Agent it sends (to kie.ai and to result-file hosts)."""

__version__ = "0.1.0"


def user_agent() -> str:
    """``kie-queue/<version> (+python-requests)``: a real User-Agent (kie.ai's front refuses clients without one)."""
    return f"kie-queue/{__version__} (+python-requests)"
