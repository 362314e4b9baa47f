"""dml's errors as Python exceptions: one class per dml_status (include/dml.h), one table."""


class Error(Exception):
    """Base of every error dml raises. ``status`` is the dml_status value, ``status_name`` its
    constant name ("DML_ERR_DATA"); ``str(e)`` is dml's message (it names the file)."""

    status = None
    status_name = None


class UsageError(Error, ValueError):
    """DML_ERR_USAGE: a bad argument (also raised by the package for a wrong shape or dtype)."""


class ConfigError(Error):
    """DML_ERR_CONFIG: a config that does not validate (dml.train)."""


class DataError(Error):
    """DML_ERR_DATA: an input file that is missing, malformed or inconsistent."""


class InputOutputError(Error, OSError):
    """DML_ERR_IO: reading or writing failed for a reason outside the input (a full disk).
    Also an OSError; named so as not to shadow the builtin IOError."""


class NoMemoryError(Error, MemoryError):
    """DML_ERR_NOMEM: an allocation failed. Also a MemoryError."""


class DivergedError(Error, ArithmeticError):
    """DML_ERR_DIVERGED: training produced NaN or Inf (dml.train)."""


class InternalError(Error):
    """DML_ERR_INTERNAL: a broken invariant, a bug in dml."""


class StoppedError(Error):
    """DML_ERR_INTERRUPTED: training stopped on request, its checkpoint written when it has a
    run folder (dml.train raises it when its callback returned True; Ctrl-C raises
    KeyboardInterrupt)."""


# dml_status value -> (constant name, exception class, what it means): the only place they are
# mapped (include/dml.h's enum dml_status).
STATUS = {
    1: ("DML_ERR_USAGE", UsageError, "a bad argument"),
    2: ("DML_ERR_CONFIG", ConfigError, "a config that does not validate"),
    3: ("DML_ERR_DATA", DataError, "a missing, malformed or inconsistent input"),
    4: ("DML_ERR_IO", InputOutputError, "reading or writing failed"),
    5: ("DML_ERR_NOMEM", NoMemoryError, "out of memory"),
    6: ("DML_ERR_DIVERGED", DivergedError, "training produced NaN or Inf"),
    7: ("DML_ERR_INTERNAL", InternalError, "a bug in dml"),
    8: ("DML_ERR_INTERRUPTED", StoppedError, "stopped on request"),
}


def error_for(status, message=None, context=None):
    """The exception for a non-zero dml_status: dml's own message when the call gave one, else
    "context: what the status means (DML_ERR_...)"."""
    name, cls, meaning = STATUS.get(int(status), ("DML_ERR_%d" % int(status), InternalError,
                                                  "an unknown status"))
    if not message:
        message = "%s%s (%s)" % (context + ": " if context else "", meaning, name)
    e = cls(message)
    e.status, e.status_name = int(status), name
    return e


def check(status, context, message=None):
    """Raises error_for(status, message, context) unless status is DML_OK (0)."""
    if status != 0:
        raise error_for(status, message, context)
