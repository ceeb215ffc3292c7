# What `import detcheck` offers, for type checkers: at run time each name is imported on first
# use (`__getattr__` in __init__.py), so the import stays as cheap as the version string.
from detcheck.api import CompareResult as CompareResult
from detcheck.api import GenerateResult as GenerateResult
from detcheck.api import Report as Report
from detcheck.api import RunResult as RunResult
from detcheck.api import analyze as analyze
from detcheck.api import audit as audit
from detcheck.api import compare as compare
from detcheck.api import flip as flip
from detcheck.api import generate as generate
from detcheck.api import verify as verify
from detcheck.errors import DataError as DataError
from detcheck.errors import DetcheckError as DetcheckError
from detcheck.errors import EndpointError as EndpointError
from detcheck.errors import Interrupted as Interrupted
from detcheck.errors import StorageError as StorageError
from detcheck.errors import UsageError as UsageError

__version__: str
