"""The installed package imports and exposes its native module."""

import llmkg
from llmkg import _core


def test_version_comes_from_the_native_module() -> None:
    assert llmkg.__version__ == _core.__version__
    assert llmkg.__version__.count(".") == 2
