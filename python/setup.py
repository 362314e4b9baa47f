"""Copies libdml.so into the package being built (the rest is pyproject.toml).

Which library: $DML_LIB when set, else the source tree's build/libdml.so (run `make` first).
Without either the package installs without a copy and says so; it then loads libdml.so from
DML_LIB or the system's (make install) at import (dml/_lib.py).
"""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildPyWithLib(build_py):
    def run(self):
        super().run()
        src = os.environ.get("DML_LIB") or os.path.join(HERE, "..", "build", "libdml.so")
        dst = os.path.join(self.build_lib, "dml", "libdml.so")
        if os.path.exists(src):
            shutil.copyfile(src, dst)
            os.chmod(dst, 0o755)
            print("dml: packaged %s" % os.path.abspath(src))
        else:
            print("dml: WARNING: %s not found (run make, or set DML_LIB): the package will "
                  "look for libdml.so at import (DML_LIB, then the system's)" % src)


class BinaryDistribution(Distribution):
    """A wheel tagged for this platform: it may hold a compiled libdml.so."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildPyWithLib}, distclass=BinaryDistribution)
