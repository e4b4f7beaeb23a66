"""The registered checks of each graded lab, one module per lab (see dlcourse.grading).

A check is a plain function of the student's answers, registered with its points and two
hints. It returns when the answer is right and raises ``AssertionError`` with a message in
the student's terms when it is not. Unit tests run every check on the solutions.

The grader runs the same functions in its own process, where a student's function returns
plain data and any other object it returns (a network) stays in the submission's sandbox
(dlcourse.grader): so checks use ``grading.is_a`` rather than ``isinstance`` on what student
code returns, compute their verdicts from returned values, and build what the student's code
must change (an optimizer over its network) with ``grading.student_side``.
"""


def prepare_mnist_cnn() -> None:
    """A lab's ``prepare`` (run once by the grader, before any submission) when its checks use
    the MNIST network of notebook 08: graded kernels cannot write it to disk themselves."""
    from dlcourse import models

    models.mnist_cnn(progress=False)


def accuracy(net, X, y, batch_size: int = 1000) -> float:
    """Test accuracy of ``net`` on the uint8 images ``X`` (as ``models.accuracy``), computed here from
    the logits the network returns: also for a network that lives in a graded sandbox."""
    import numpy as np
    import torch

    from dlcourse import models

    net.eval()
    X = models.to_tensor(X)
    with torch.no_grad():
        predicted = [torch.as_tensor(net(X[i:i + batch_size])).detach().argmax(dim=1)
                     for i in range(0, len(X), batch_size)]
    return float(np.mean(torch.cat(predicted).numpy() == np.asarray(y)))
