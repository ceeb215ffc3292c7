"""The process-wide memory settings analysis changes are put back afterwards."""

from __future__ import annotations

import pytest

from detcheck.analysis.heap import keep_freed_memory


def test_numpy_hugepage_advice_is_off_during_analysis_and_restored_after():
    np_multiarray = pytest.importorskip("numpy._core.multiarray")
    switch = np_multiarray._set_madvise_hugepage  # returns the previous setting
    original = switch(True)
    try:
        with keep_freed_memory():
            assert switch(False) is False  # off inside
        assert switch(True) is True  # back on after
        with pytest.raises(RuntimeError), keep_freed_memory():
            raise RuntimeError("analysis failed")
        assert switch(True) is True  # and after a failure too
    finally:
        switch(original)
