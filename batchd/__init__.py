"""batchd: a service that makes LLM batch APIs boring."""

__version__ = "0.1.0"

__all__ = ["__version__"]
