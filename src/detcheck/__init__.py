"""detcheck: measure how non-deterministic an LLM endpoint's token log-probabilities are.

    import detcheck

    detcheck.flip(n=200, base_url="http://localhost:8080/v1", model="local").report.distinct
    detcheck.analyze("runs/").clusters
    detcheck.compare("runs/baseline", "runs/today").drift

The functions and classes are imported when first used, so `import detcheck` stays as fast as
the version string (`bench/import_time.py` measures it); `__init__.pyi` tells type checkers what
they are.
"""

from __future__ import annotations

__version__ = "0.1.0"

# name -> the module that defines it
_LAZY = {
    "flip": "detcheck.api",
    "generate": "detcheck.api",
    "analyze": "detcheck.api",
    "audit": "detcheck.api",
    "verify": "detcheck.api",
    "compare": "detcheck.api",
    "Report": "detcheck.api",
    "RunResult": "detcheck.api",
    "GenerateResult": "detcheck.api",
    "CompareResult": "detcheck.api",
    "DetcheckError": "detcheck.errors",
    "UsageError": "detcheck.errors",
    "DataError": "detcheck.errors",
    "EndpointError": "detcheck.errors",
    "StorageError": "detcheck.errors",
    "Interrupted": "detcheck.errors",
}

__all__ = [
    "CompareResult",
    "DataError",
    "DetcheckError",
    "EndpointError",
    "GenerateResult",
    "Interrupted",
    "Report",
    "RunResult",
    "StorageError",
    "UsageError",
    "__version__",
    "analyze",
    "audit",
    "compare",
    "flip",
    "generate",
    "verify",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'detcheck' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
