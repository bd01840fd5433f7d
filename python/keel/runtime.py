"""Runtime helpers with Torch-TensorRT's names (torch_tensorrt.runtime)."""
import contextlib

from ._module import Module


@contextlib.contextmanager
def enable_pre_allocated_outputs(module):
    """`with keel.runtime.enable_pre_allocated_outputs(module):` runs the block with the module in
    PREALLOCATED mode (outputs prepared during the previous call) and restores its mode on exit."""
    if not isinstance(module, Module):
        raise TypeError("enable_pre_allocated_outputs needs a keel.Module, got %s" % type(module).__name__)
    saved = module.output_mode
    module.output_mode = "preallocated"
    try:
        yield module
    finally:
        if not module.closed:
            module.output_mode = saved
