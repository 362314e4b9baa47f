"""pip install of ./python into a fresh venv, offline, then `import dml` from outside the tree
loads the libdml.so copied into the package."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import dml

PY = "/usr/bin/python3"
SRC = os.path.dirname(os.path.dirname(os.path.abspath(dml.__file__)))


def _require(module, package):
    r = subprocess.run([PY, "-c", "import " + module], capture_output=True)
    if r.returncode != 0:
        pytest.skip("%s is not installed (make deps installs it)" % package)


def test_pip_install_offline(tmp_path, model_path, data):
    _require("ensurepip", "python3-venv")
    _require("pip", "python3-pip")
    _require("setuptools", "python3-setuptools")
    _require("wheel", "python3-wheel")
    # a copy of the sources, so the in-tree build leaves nothing in the repository
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(os.path.join(SRC, name), src / name)
    shutil.copytree(os.path.join(SRC, "dml"), src / "dml",
                    ignore=shutil.ignore_patterns("__pycache__", "libdml.so"))
    venv = tmp_path / "venv"
    subprocess.run([PY, "-m", "venv", "--system-site-packages", str(venv)], check=True,
                   capture_output=True, timeout=300)
    env = dict(os.environ, DML_LIB=dml.lib_path(), PIP_NO_INDEX="1")
    env.pop("PYTHONPATH", None)
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "--no-index",
                        "--no-build-isolation", str(src)], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    # from outside the tree, with no DML_LIB and no PYTHONPATH: the package's own copy
    env.pop("DML_LIB")
    X = data[1][:5]
    np.save(tmp_path / "x.npy", X)
    code = ("import sys, numpy as np, dml; print(dml.__file__); print(dml.lib_path()); "
            "m = dml.Model(sys.argv[1]); np.save(sys.argv[2], m.encode(np.load(sys.argv[3])))\n"
            "import dml.sklearn, dml.train\n"  # the training modules are installed too
            "e = dml.sklearn.DMLEncoder(dim=4, hidden=(8,), epochs=1, threads=1)\n"
            "assert e.fit(np.load(sys.argv[3])).transform(np.load(sys.argv[3])).shape == (5, 4)")
    r = subprocess.run([str(venv / "bin" / "python"), "-c", code, model_path,
                        str(tmp_path / "e.npy"), str(tmp_path / "x.npy")],
                       cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    pkg_file, lib = r.stdout.split()
    site = str(venv / "lib")
    assert pkg_file.startswith(site) and lib.startswith(site) and lib.endswith("dml/libdml.so")
    with dml.Model(model_path) as m:
        np.testing.assert_array_equal(np.load(tmp_path / "e.npy"), m.encode(X))


def test_source_tree_finds_the_build_tree_library():
    """PYTHONPATH=python with no DML_LIB: the package loads ../build/libdml.so of its tree."""
    if os.path.exists(os.path.join(SRC, "dml", "libdml.so")):
        pytest.skip("python/dml/libdml.so exists in the tree and is found first")
    env = dict(os.environ, PYTHONPATH=SRC)
    env.pop("DML_LIB", None)
    r = subprocess.run([sys.executable, "-c", "import dml; print(dml.lib_path())"], env=env,
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == os.path.join(os.path.dirname(SRC), "build", "libdml.so")
