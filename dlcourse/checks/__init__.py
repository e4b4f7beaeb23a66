"""The registered checks of each graded lab, one module per lab (see dlcourse.grading).

A check is a plain function of the student's answers, registered with its points and a
hint. It returns when the answer is right and raises ``AssertionError`` with a message in
the student's terms when it is not. Unit tests run every check on the solutions.
"""


def prepare_mnist_cnn() -> None:
    """A lab's ``prepare`` (run once by the grader, before any submission) when its checks use
    the MNIST network of notebook 08: graded kernels cannot write it to disk themselves."""
    from dlcourse import models

    models.mnist_cnn(progress=False)
