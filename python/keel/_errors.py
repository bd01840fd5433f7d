"""keel's status codes as Python exceptions: KeelError and one subclass per keel_code."""
from ._lib import lib


class KeelError(Exception):
    """A keel call failed. `code` is the keel_code number, `code_name` its name, `message` keel's text."""
    code = 0
    code_name = "OK"

    def __init__(self, message):
        super().__init__(message)
        self.message = message

    def __str__(self):
        return "%s: %s" % (self.code_name, self.message)


class InvalidArgumentError(KeelError, ValueError):
    code, code_name = 1, "INVALID_ARGUMENT"


class InvalidModelError(KeelError):
    code, code_name = 2, "INVALID_MODEL"


class UnsupportedError(KeelError):
    code, code_name = 3, "UNSUPPORTED"


class OutOfMemoryError(KeelError, MemoryError):
    code, code_name = 4, "OUT_OF_MEMORY"


class ShapeMismatchError(KeelError, ValueError):
    code, code_name = 5, "SHAPE_MISMATCH"


class DeviceError(KeelError):
    code, code_name = 6, "DEVICE_ERROR"


class KeelIOError(KeelError):
    code, code_name = 7, "IO_ERROR"


class InternalError(KeelError):
    code, code_name = 8, "INTERNAL"


BY_CODE = {c.code: c for c in (InvalidArgumentError, InvalidModelError, UnsupportedError, OutOfMemoryError,
                               ShapeMismatchError, DeviceError, KeelIOError, InternalError)}


def error_from_status(status):
    """Turn a non-NULL keel_status* into an exception (and free the status)."""
    try:
        code = lib.keel_status_code(status)
        msg = (lib.keel_status_message(status) or b"").decode("utf-8", "replace")
    finally:
        lib.keel_status_free(status)
    return make_error(code, msg)


def check(status):
    if status:
        raise error_from_status(status)


def make_error(code, message):
    """The exception for a keel_code and message (keel._keelc raises what this returns)."""
    cls = BY_CODE.get(code)
    if cls is None:
        err = KeelError(message)
        err.code, err.code_name = code, "UNKNOWN(%d)" % code
        return err
    return cls(message)
