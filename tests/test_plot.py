"""dlcourse.plot: each helper draws what it is given and rejects bad shapes clearly."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dlcourse import plot  # noqa: E402


def test_image_grid_layout():
    fig = plot.image_grid(np.zeros((12, 8, 8)), labels=list(range(12)), ncols=5, title="t")
    assert len(fig.axes) == 15  # 3 rows of 5
    assert [ax.get_title() for ax in fig.axes[:3]] == ["0", "1", "2"]


def test_image_grid_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        plot.image_grid(np.zeros((8, 8)))
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        plot.image_grid(np.zeros((3, 8, 8)), labels=[1, 2])


def test_training_curves_marks_best_epoch():
    ax = plot.training_curves({"val accuracy": [0.5, 0.9, 0.8]}, best="val accuracy", title="x")
    assert ax.lines[0].get_xdata().tolist() == [1, 2, 3]
    assert "epoch 2" in ax.texts[0].get_text()
    with pytest.raises(ValueError, match="history is empty"):
        plot.training_curves({})


def test_decision_boundary_calls_predict_on_grid():
    X = np.array([[0.0, 0.0], [1.0, 1.0]])
    seen = {}

    def predict(P):
        seen["shape"] = P.shape
        return (P.sum(axis=1) > 1).astype(float)

    plot.decision_boundary(predict, X, np.array([0, 1]), resolution=50)
    assert seen["shape"] == (2500, 2)
    with pytest.raises(ValueError, match=r"X must be \(N, 2\)"):
        plot.decision_boundary(predict, np.zeros((3, 3)), np.zeros(3))
