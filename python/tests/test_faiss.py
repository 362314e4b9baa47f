"""to_faiss: dml's codebooks and codes in a faiss.IndexPQ, the one `dml export --faiss` writes."""
import os

import numpy as np
import pytest

from conftest import run_dml

faiss = pytest.importorskip("faiss", reason="python3-faiss is not installed")


def test_to_faiss_equals_export(model, model_path, data, workdir):
    path, X = data
    index = model.to_faiss(X)
    assert isinstance(index, faiss.IndexPQ) and index.ntotal == len(X)
    pq = model.pq
    assert (index.pq.M, index.pq.nbits, index.d) == (pq.m, pq.nbits, pq.d)
    emb = model.encode(X)
    codes = pq.encode(emb)
    # dml's codebooks are FAISS's layout: FAISS's own encoder gives dml's codes
    np.testing.assert_array_equal(index.pq.compute_codes(emb), codes)
    np.testing.assert_array_equal(
        faiss.vector_to_array(index.codes).reshape(len(X), pq.code_size), codes)
    exported = os.path.join(workdir, "export.index")
    run_dml("export", model_path, "--faiss", exported, "--db", path)
    ref = faiss.read_index(exported)
    np.testing.assert_array_equal(faiss.vector_to_array(ref.codes),
                                  faiss.vector_to_array(index.codes))
    np.testing.assert_array_equal(faiss.vector_to_array(ref.pq.centroids),
                                  faiss.vector_to_array(index.pq.centroids))
    assert ref.metric_type == index.metric_type == faiss.METRIC_L2
    # FAISS's search agrees with dml's: the same neighbours, the same distances
    D, I = index.search(emb[:10], 5)
    Dd, Id = pq.search(codes, emb[:10], 5)
    np.testing.assert_allclose(D, Dd, rtol=1e-4, atol=1e-5)
    dec = pq.decode(codes)
    adc = ((emb[:10, None, :] - dec[I]) ** 2).sum(-1)  # FAISS's ids at FAISS's distances (ties
    np.testing.assert_allclose(adc, D, rtol=1e-4, atol=1e-5)  # may pick other rows than dml)


def test_to_faiss_inner_product(model, data):
    index = model.to_faiss(data[1][:10], metric="inner_product")
    assert index.metric_type == faiss.METRIC_INNER_PRODUCT and index.ntotal == 10
