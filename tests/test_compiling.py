"""call_or_fall_back: a failed compile switches to the eager kernels once, with a warning; listed errors run one call
eagerly and keep the compiled kernels; out-of-memory and errors of eager kernels propagate."""
import pytest
import torch

from rmp_zoo.compiling import call_or_fall_back


class Recompiled(Exception):
    pass


def failing(error: BaseException):
    def fn(x):
        raise error
    return fn


def eager(x):
    return x + 1


def call(compiled, *, is_compiled=True, switched=None):
    switched = [] if switched is None else switched
    out = call_or_fall_back(compiled, eager, (1,), what="test kernels", is_compiled=is_compiled,
                            on_failure=lambda: switched.append(True), eager_on=(Recompiled,))
    return out, switched


def test_compile_failure_runs_eagerly_and_switches_once_with_a_warning():
    with pytest.warns(RuntimeWarning, match="torch.compile of the test kernels failed.*RMP_ZOO_COMPILE=0"):
        out, switched = call(failing(RuntimeError("no compiler")))
    assert out == 2 and switched == [True]


def test_listed_errors_run_one_call_eagerly_without_switching(recwarn):
    out, switched = call(failing(Recompiled()))
    assert out == 2 and switched == [] and not recwarn.list


def test_out_of_memory_and_eager_errors_propagate():
    with pytest.raises(torch.OutOfMemoryError):
        call(failing(torch.OutOfMemoryError("out of memory")))
    with pytest.raises(ValueError, match="bad input"):
        call(failing(ValueError("bad input")), is_compiled=False)
    assert call(eager) == (2, [])
