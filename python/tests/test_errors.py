"""dml's statuses as exceptions: the table against the library, and each type the inference API
can raise, from a real failure."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import dml
from dml import _errors, _lib


def test_table_matches_the_library():
    """Every status the library names maps to the class of that name, and dml_status_name agrees."""
    L = _lib.load()
    for status, (name, cls, meaning) in _errors.STATUS.items():
        assert L.dml_status_name(status).decode() == name
        e = _errors.error_for(status, "msg")
        assert type(e) is cls and isinstance(e, dml.Error)
        assert (e.status, e.status_name, str(e)) == (status, name, "msg")
        assert str(_errors.error_for(status, None, "call")) == "call: %s (%s)" % (meaning, name)
    assert L.dml_status_name(0).decode() == "DML_OK"
    assert issubclass(dml.NoMemoryError, MemoryError)
    assert issubclass(dml.InputOutputError, OSError)
    assert issubclass(dml.UsageError, ValueError)
    assert dml.InputOutputError is not IOError and not hasattr(dml, "IOError")


def test_missing_file_is_a_data_error(tmp_path):
    path = str(tmp_path / "none.h5")
    with pytest.raises(dml.DataError) as e:
        dml.Model(path)
    assert path in str(e.value) and e.value.status_name == "DML_ERR_DATA"


def test_damaged_file_is_a_data_error(model_path, tmp_path):
    orig = open(model_path, "rb").read()
    raw = bytearray(orig)
    raw[12] ^= 0xFF  # in the superblock, which carries a checksum
    bad = tmp_path / "damaged.h5"
    bad.write_bytes(bytes(raw))
    with pytest.raises(dml.DataError, match="damaged.h5: .*damaged"):
        dml.Model(bad)
    cut = tmp_path / "truncated.h5"
    cut.write_bytes(orig[: len(orig) // 2])
    with pytest.raises(dml.DataError, match="truncated.h5"):
        dml.Model(cut)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not a model")
    with pytest.raises(dml.DataError, match="junk.h5"):
        dml.Model(junk)


def test_encode_b_on_one_tower_is_a_usage_error(model, monkeypatch):
    """The C call itself refuses (DML_ERR_USAGE), not only the package's check."""
    monkeypatch.setattr(model, "dim_in_b", model.dim_in)  # get past the Python check
    with pytest.raises(dml.UsageError) as e:
        model.encode_b(np.zeros((2, model.dim_in), np.float32))
    assert e.value.status_name == "DML_ERR_USAGE"


def test_out_of_memory_is_a_no_memory_error(model_path):
    """A search whose scratch (k ints) does not fit an address-space limit: dml's allocation
    fails and NoMemoryError (a MemoryError) is raised; the same call under a higher limit works.
    In a child process, so the limit stays there."""
    code = textwrap.dedent("""
        import resource, sys
        import numpy as np
        import dml
        m = dml.Model(sys.argv[1])
        e = np.random.default_rng(0).normal(size=(64, m.dim_out)).astype(np.float32)
        c = m.pq.encode(e)
        m.pq.search(c, e[:1], 3)
        k = 4000000
        vm = [int(l.split()[1]) for l in open("/proc/self/status")
              if l.startswith("VmSize")][0] * 1024
        extra = int(sys.argv[2]) << 20
        resource.setrlimit(resource.RLIMIT_AS, (vm + k * 12 + extra, resource.RLIM_INFINITY))
        try:
            D, I = m.pq.search(c, e[:1], k)
            print("ok", I[0, 64])
        except dml.NoMemoryError as x:
            print("nomem", x.status_name, isinstance(x, MemoryError), "out of memory" in str(x))
    """)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(dml.__file__)))
    outs = [subprocess.run([sys.executable, "-c", code, model_path, str(extra)], env=env,
                           capture_output=True, text=True, timeout=120) for extra in (8, 256)]
    assert outs[0].stdout.strip() == "nomem DML_ERR_NOMEM True True", outs[0].stderr
    assert outs[1].stdout.strip() == "ok -1", outs[1].stderr


def test_import_error_names_where_it_looked(tmp_path):
    env = dict(os.environ, DML_LIB=str(tmp_path / "libnothing.so"),
               PYTHONPATH=os.path.dirname(os.path.dirname(dml.__file__)))
    r = subprocess.run([sys.executable, "-c", "import dml"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0
    assert "ImportError: dml: cannot load libdml.so" in r.stderr
    assert "DML_LIB: %s (no such file)" % (tmp_path / "libnothing.so") in r.stderr
