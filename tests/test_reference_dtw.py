"""The reference study's exact DTW variants run through tslearn's batched DTW; they must give
pyts' distances (the reference's implementation) for the same options."""
import numpy as np
import pytest

from blinkbench.detectors.blink.reference import dtw_matrix


@pytest.mark.slow          # pyts compiles its DTW with numba on first use (about a minute)
@pytest.mark.parametrize("method,options", [("classic", None), ("sakoechiba", {"window_size": 0.1}),
                                            ("sakoechiba", {"window_size": 0.25}), ("itakura", {"max_slope": 2.0})])
def test_exact_variants_equal_pyts(method, options):
    from pyts.metrics import dtw

    rng = np.random.default_rng(1)
    for n in (60, 150):
        A, B = rng.random((3, n)), rng.random((4, n))
        want = np.array([[dtw(a, b, dist="square", method=method, options=options) for b in B] for a in A])
        np.testing.assert_allclose(dtw_matrix(A, B, method, options), want, rtol=1e-9, atol=1e-12)


def test_reference_cap_keeps_both_classes_and_is_seeded():
    from blinkbench.detectors.blink.reference import KnnDtwFast

    X = np.random.default_rng(0).random((200, 30))
    y = np.r_[np.zeros(150, int), np.ones(50, int)]
    a, b = (KnnDtwFast(seed=4, max_reference=20) for _ in range(2))
    for d in (a, b):
        d._fit_windows(X, None, y, None)
    assert len(a.train_y_) == 20 and set(a.train_y_) == {0, 1}
    assert np.array_equal(a.train_x_, b.train_x_)
    assert abs(a.train_y_.mean() - 0.25) <= 0.05
