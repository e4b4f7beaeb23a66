"""The registered checks of each graded lab, one module per lab (see dlcourse.grading).

A check is a plain function of the student's answers, registered with its points and a
hint. It returns when the answer is right and raises ``AssertionError`` with a message in
the student's terms when it is not. Unit tests run every check on the solutions.
"""
