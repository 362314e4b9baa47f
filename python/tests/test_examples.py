"""The Python examples run on the tiny model."""
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT


def test_hnswlib_example(model_path, data):
    pytest.importorskip("hnswlib", reason="python3-hnswlib is not installed")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
    r = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "hnswlib_example.py"),
                        model_path, data[0], "--k", "5"], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    m = re.search(r"database 400 x 8, 100 queries, space l2: recall@5 of HNSW against exact "
                  r"([0-9.]+)", r.stdout)
    assert m, r.stdout
    assert float(m.group(1)) >= 0.9  # 400 points: HNSW with ef 50 is all but exact
