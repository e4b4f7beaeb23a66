"""Checks for labs/lab09_sequences (after notebook 16): an LSTM cell, teacher forcing with clipping, greedy decoding."""

from __future__ import annotations

import math
import numbers

from dlcourse.grading import Foreign, is_a, register, student_side

# The bar of lab09.train, set from the solution on training seeds 0-4: held-out exact match 0.941-0.982 (see
# INSTRUCTORS.md) with a margin. Character accuracy is far higher (0.983-0.994): one wrong digit of ten fails a date.
EXACT_BAR = 0.90
TRAIN_SIZE, TEST_SIZE = 4000, 1000


def start_code() -> int:
    """The decoder's start token: one past the target alphabet's codes (0 pads, 1..11 are "-0123456789")."""
    from dlcourse import data

    return len(data.DATE_TARGET_CHARS) + 1


def date_codes(n: int, split: str, seed: int):
    """``n`` dates of ``split`` as code tensors (sources (n, 35), targets (n, 10)), as the lab makes them."""
    import torch

    from dlcourse import data

    sources, targets = data.make_dates(n, split, seed=seed)
    return (torch.as_tensor(data.encode_chars(sources, data.DATE_SOURCE_CHARS, data.DATE_SOURCE_LENGTH)),
            torch.as_tensor(data.encode_chars(targets, data.DATE_TARGET_CHARS, data.DATE_TARGET_LENGTH)))


def fixture_translator(seed: int = 0, hidden: int = 8, embed: int = 4):
    """A small random encoder-decoder with the lab's interface, for the checks: ``encode(src) -> (context, state)``,
    ``decode(prev, state, context) -> (logits, state)`` and ``forward(src, prev) -> logits``. Its context is one
    vector per date (the mean of the encoder's outputs), not the lab's attention memory: an answer must pass it
    back untouched. Its weights come from ``seed`` alone, so the judge and a sandbox build the same network."""
    import torch
    from torch import nn

    from dlcourse import data

    start = start_code()

    class FixtureTranslator(nn.Module):
        def __init__(self):
            super().__init__()
            self.source_embedding = nn.Embedding(len(data.DATE_SOURCE_CHARS) + 1, embed)
            self.encoder = nn.LSTM(embed, hidden, batch_first=True)
            self.target_embedding = nn.Embedding(start + 1, embed)
            self.decoder = nn.LSTM(embed, hidden, batch_first=True)
            self.out = nn.Linear(2 * hidden, start)

        def encode(self, src):
            outputs, state = self.encoder(self.source_embedding(src))
            mask = (src != 0).unsqueeze(-1).to(outputs.dtype)
            return (outputs * mask).sum(1) / mask.sum(1).clamp_min(1), state

        def decode(self, prev, state, context):
            h, state = self.decoder(self.target_embedding(prev), state)
            return self.out(torch.cat([h, context[:, None, :].expand_as(h)], dim=-1)), state

        def forward(self, src, prev):
            context, state = self.encode(src)
            return self.decode(prev, state, context)[0]

    model = FixtureTranslator()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.7)
    return model


def _parameters(model):
    """Copies of ``model``'s parameters (run where the model lives)."""
    return [p.detach().clone() for p in model.parameters()]


def _gradient_norm(model) -> float:
    """The global L2 norm of ``model``'s current gradients (run where the model lives)."""
    import torch

    grads = [p.grad.detach().reshape(-1) for p in model.parameters() if p.grad is not None]
    return float(torch.cat(grads).norm()) if grads else 0.0


def _kind(value) -> str:
    """The class name of ``value``, also of an object that lives in a graded sandbox (its first type)."""
    if isinstance(value, Foreign) and value._types:
        return value._types[0].rsplit(".", 1)[-1]
    return type(value).__name__


def _tensor(value, name):
    import torch

    assert isinstance(value, torch.Tensor), f"{name} must return a torch tensor, got {_kind(value)}"
    return value.detach()


def greedy_by_recomputation(model, src, length: int):
    """Greedy decoding the slow way: run the whole model again on the growing prefix for every new character.
    Equal to decoding step by step with the decoder's state, because the decoder only looks backwards."""
    import torch

    prev = torch.full((len(src), 1), start_code(), dtype=torch.long)
    with torch.no_grad():
        for _ in range(length):
            logits = _tensor(model(src, prev), "the model")
            assert logits.ndim == 3 and logits.shape[:2] == prev.shape, \
                f"model(src, prev) must give logits (N, T, classes) for prev (N, T); got {tuple(logits.shape)}"
            prev = torch.cat([prev, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
    return prev[:, 1:]


# --------------------------------------------------------------------------- 1 · the LSTM cell
def lstm_weights(input_size: int, hidden: int, seed: int, dtype=None):
    """Random (W_ih, W_hh, b_ih, b_hh) in PyTorch's layout, and a ``torch.nn.LSTM`` holding the same weights."""
    import torch

    dtype = dtype or torch.float32
    g = torch.Generator().manual_seed(seed)
    weights = [torch.randn(shape, generator=g, dtype=dtype) * 0.5 for shape in
               ((4 * hidden, input_size), (4 * hidden, hidden), (4 * hidden,), (4 * hidden,))]
    lstm = torch.nn.LSTM(input_size, hidden).to(dtype)
    with torch.no_grad():
        for p, w in zip((lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0), weights):
            p.copy_(w)
    return weights, lstm


def _step(lstm_cell, x, h, c, weights):
    import torch

    out = lstm_cell(x, h, c, *weights)
    assert isinstance(out, (tuple, list)) and len(out) == 2, "lstm_cell returns the pair (h_new, c_new)"
    h_new, c_new = out
    for name, value in (("h_new", h_new), ("c_new", c_new)):
        assert isinstance(value, torch.Tensor), f"{name} must be a torch tensor, got {_kind(value)}"
        assert tuple(value.shape) == tuple(h.shape), \
            f"{name} must have the shape of h, {tuple(h.shape)}; got {tuple(value.shape)}"
    return h_new, c_new


def unroll(lstm_cell, xs, h, c, weights, probe):
    """Run ``lstm_cell`` over the sequence ``xs (T, N, I)`` and differentiate ``sum(probe * outputs)`` with respect
    to the inputs and the four weights. Runs where the student's code runs (``student_side``), so that autograd sees
    the student's function. Returns (outputs (T, N, H), last c, [grad xs, grad W_ih, grad W_hh, grad b_ih, grad b_hh])."""
    import torch

    leaves = [t.detach().clone().requires_grad_(True) for t in (xs, *weights)]
    xs, weights = leaves[0], leaves[1:]
    outputs = []
    for t in range(len(xs)):
        h, c = _step(lstm_cell, xs[t], h, c, weights)
        outputs.append(h)
    outputs = torch.stack(outputs)
    assert outputs.requires_grad, ("the output of lstm_cell is cut off from the autograd graph: no gradient reaches "
                                   "the weights (do not use .item(), .detach() or NumPy inside)")
    grads = torch.autograd.grad((outputs * probe).sum(), leaves, allow_unused=True)
    return outputs.detach(), c.detach(), [torch.zeros_like(x) if g is None else g for g, x in zip(grads, leaves)]


@register("lab09.lstm_cell", points=3,
          hint="All four gates come out of one affine map: x @ W_ih.T + b_ih + h @ W_hh.T + b_hh has 4 * hidden "
               "columns; split it in four in PyTorch's order (input, forget, cell candidate, output). Three gates "
               "take a sigmoid, the candidate a tanh; the new h uses the NEW cell state.",
          more="gates = x @ W_ih.T + b_ih + h @ W_hh.T + b_hh; i, f, g, o = gates.chunk(4, dim=1); "
               "i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o); g = torch.tanh(g); "
               "c_new = f * c + i * g; h_new = o * torch.tanh(c_new); return h_new, c_new.")
def check_lstm_cell(lstm_cell):
    import torch

    weights, lstm = lstm_weights(4, 3, seed=16)
    g = torch.Generator().manual_seed(9)
    x, h, c = torch.randn(5, 4, generator=g), torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    h_new, c_new = (v.detach() for v in _step(lstm_cell, x, h, c, weights))
    with torch.no_grad():
        _, (h_ref, c_ref) = lstm(x[None], (h[None], c[None]))
    h_ref, c_ref = h_ref[0], c_ref[0]
    if torch.allclose(h_new, c_ref, atol=1e-5) and torch.allclose(c_new, h_ref, atol=1e-5):
        raise AssertionError("h and c are swapped: return (h_new, c_new), in that order")
    c_worst = float((c_new - c_ref).abs().max())
    assert c_worst < 1e-6, (f"one step from random (x, h, c): c_new is off by {c_worst:.3g} from torch.nn.LSTM's with "
                            "the same weights: check the gate order (input, forget, candidate, output) and both biases")
    if torch.allclose(h_new, (h_ref / torch.tanh(c_ref)) * torch.tanh(c), atol=1e-5):   # o * tanh(old c)
        raise AssertionError("h_new uses the old cell state: h_new = o * tanh(c_new), with the c just computed")
    h_worst = float((h_new - h_ref).abs().max())
    assert h_worst < 1e-6, f"c_new is right but h_new is off by {h_worst:.3g}: h_new = o * tanh(c_new)"

    weights, lstm = lstm_weights(6, 5, seed=61)
    g = torch.Generator().manual_seed(10)
    xs = torch.randn(7, 3, 6, generator=g)                # a sequence of 7 steps, a batch of 3
    h0, c0 = torch.zeros(3, 5), torch.zeros(3, 5)
    probe = torch.randn(7, 3, 5, generator=g)
    outputs, c_last, grads = student_side(unroll)(lstm_cell, xs, h0, c0, weights, probe)
    reference = [xs.clone().requires_grad_(True), *lstm.parameters()]
    expected, (_, c_expected) = lstm(reference[0])
    expected_grads = torch.autograd.grad((expected * probe).sum(), reference)
    worst = float((outputs - expected.detach()).abs().max())
    assert worst < 1e-6, (f"over a sequence of 7 steps your outputs h_1..h_7 are off by {worst:.3g} from "
                          "torch.nn.LSTM's: each step must take the (h, c) the previous step returned")
    assert float((c_last - c_expected[0].detach()).abs().max()) < 1e-6, "the last cell state of the sequence is wrong"
    for name, mine, theirs in zip(("the inputs", "W_ih", "W_hh", "b_ih", "b_hh"), grads, expected_grads):
        gap = float((torch.as_tensor(mine) - theirs).abs().max())
        assert gap < 2e-6, (f"backpropagation through time gives a gradient with respect to {name} that is off by "
                            f"{gap:.3g} from torch.nn.LSTM's: compute every step with differentiable torch operations")


# --------------------------------------------------------------------------- 2 · teacher forcing, clipping
def _as_float(value, name) -> float:
    import torch

    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    assert isinstance(value, numbers.Real) and not isinstance(value, bool), \
        f"{name} returns the loss as a Python float (loss.item()), got {_kind(value)}"
    return float(value)


def _reference_step(model, src, tgt, max_norm, lr):
    """One SGD step of ``model`` (the judge's twin) with teacher forcing and clipping: (loss, unclipped params)."""
    import torch
    import torch.nn.functional as F

    prev = torch.cat([torch.full((len(tgt), 1), start_code(), dtype=torch.long), tgt[:, :-1]], dim=1)
    logits = model(src, prev)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))
    params = list(model.parameters())
    grads = torch.autograd.grad(loss, params)
    norm = float(torch.cat([g.reshape(-1) for g in grads]).norm())
    scale = min(1.0, max_norm / (norm + 1e-6))
    with torch.no_grad():
        unclipped = [p - lr * g for p, g in zip(params, grads)]
        for p, g in zip(params, grads):
            p -= lr * scale * g
    return float(loss.detach()), unclipped, norm


def _no_shift_loss(model, src, tgt) -> float:
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        logits = model(src, tgt)
        return float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1)))


@register("lab09.train_step", points=2,
          hint="Teacher forcing: the decoder reads the TRUE previous characters, START then the target without its "
               "last character, and must output the whole target; the loss is the cross-entropy over every position. "
               "Clip between backward() and step(), and start from zeroed gradients.",
          more="prev = torch.cat([torch.full((len(tgt), 1), START), tgt[:, :-1]], dim=1); logits = model(src, prev); "
               "loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1)); optimizer.zero_grad(); "
               "loss.backward(); nn.utils.clip_grad_norm_(model.parameters(), max_norm); optimizer.step(); "
               "return loss.item().")
def check_train_step(train_step):
    import torch

    twin = fixture_translator(seed=7)
    model = student_side(fixture_translator)(seed=7)
    lr, max_norm = 0.5, 0.2
    optimizer = student_side(torch.optim.SGD)(model.parameters(), lr=lr)
    for step, seed in enumerate((3, 4)):
        src, tgt = date_codes(6, "train", seed=seed)
        no_shift = _no_shift_loss(twin, src, tgt)
        expected, unclipped, norm = _reference_step(twin, src, tgt, max_norm, lr)
        loss = _as_float(train_step(model, optimizer, src, tgt, max_norm), "train_step")
        if math.isclose(loss, no_shift, rel_tol=1e-4) and not math.isclose(loss, expected, rel_tol=1e-4):
            raise AssertionError("the decoder was fed the target itself, so it sees the character it must predict: feed "
                                 "START followed by the target without its last character")
        assert math.isclose(loss, expected, rel_tol=1e-4), \
            (f"step {step + 1}: train_step returned the loss {loss:.5f}, expected {expected:.5f} (cross-entropy of "
             "model(src, START + target[:-1]) against the target, averaged over every character)")
        after = student_side(_parameters)(model)
        grad_norm = float(student_side(_gradient_norm)(model))
        if all(torch.allclose(a, u, atol=1e-5) for a, u in zip(after, unclipped)):
            raise AssertionError(f"the update used the raw gradient (norm {norm:.3g}), not the gradient clipped to "
                                 f"max_norm = {max_norm}: call clip_grad_norm_ between backward() and step()")
        if step == 0 and all(torch.equal(a, p.detach()) for a, p in zip(after, fixture_translator(seed=7).parameters())):
            raise AssertionError("the parameters did not change: call optimizer.step()")
        assert grad_norm <= max_norm * (1 + 1e-3), \
            (f"after train_step the gradient norm is {grad_norm:.3g}, above max_norm = {max_norm}: clip the "
             "gradients with nn.utils.clip_grad_norm_(model.parameters(), max_norm) before optimizer.step()")
        worst = max(float((a - p.detach()).abs().max()) for a, p in zip(after, twin.parameters()))
        assert worst < 1e-5, (f"step {step + 1}: the parameters after train_step are off by {worst:.3g} from one SGD "
                              "step with the clipped gradient" + (": zero the gradients before backward(), or they add "
                                                                  "up over the calls" if step else ""))


# --------------------------------------------------------------------------- 3 · greedy decoding
@register("lab09.greedy_decode", points=2,
          hint="Encode once; then, starting from the START token, ask the decoder for one step at a time, keep the "
               "most probable character and feed it back as the next input, carrying the decoder's state along.",
          more="context, state = model.encode(src); token = torch.full((len(src), 1), START); for each of the `length` "
               "steps: logits, state = model.decode(token, state, context); token = logits[:, -1].argmax(dim=-1, "
               "keepdim=True); keep it. Return torch.cat of the kept tokens, (N, length), without START.")
def check_greedy_decode(greedy_decode):
    import torch

    from dlcourse import data

    model, twin = student_side(fixture_translator)(seed=11), fixture_translator(seed=11)
    src, _ = date_codes(12, "test", seed=5)
    expected = greedy_by_recomputation(twin, src, data.DATE_TARGET_LENGTH)
    out = _tensor(greedy_decode(model, src), "greedy_decode")
    assert not out.is_floating_point(), \
        f"greedy_decode returns character codes (integers, the argmax), not {out.dtype} scores"
    if tuple(out.shape) == (len(src), data.DATE_TARGET_LENGTH + 1):
        raise AssertionError("leave the START token out: return only the `length` decoded characters")
    assert tuple(out.shape) == tuple(expected.shape), \
        f"for 12 dates greedy_decode must return codes of shape {tuple(expected.shape)}, got {tuple(out.shape)}"
    with torch.no_grad():
        blind = twin(src, torch.full((len(src), data.DATE_TARGET_LENGTH), start_code())).argmax(dim=-1)
    if torch.equal(out, blind) and not torch.equal(out, expected):
        raise AssertionError("every step was fed START again: feed each step the character the previous step chose")
    wrong = (out != expected).any(dim=0).nonzero().flatten().tolist()
    assert not wrong, (f"on a small random translator, your characters differ from greedy decoding from position "
                       f"{wrong[0]} on: each step must continue from the decoder state of the previous step and read the "
                       "argmax it chose")


# --------------------------------------------------------------------------- 4 · training, held-out exact match
def exact_match(predicted, targets) -> float:
    """The share of rows of ``predicted`` that equal their target in every position."""
    import torch

    return float((torch.as_tensor(predicted) == torch.as_tensor(targets)).all(dim=1).float().mean())


@register("lab09.train", points=3,
          hint="Build DateTranslator(hidden) after seeding from `seed`; Adam over its parameters with a learning rate "
               "falling linearly to 0; every epoch a new random order of minibatches, each one a call to your "
               "train_step (teacher forcing and clipping are in there). Return the model in eval mode.",
          more="torch.manual_seed(seed); model = DateTranslator(hidden); optimizer = torch.optim.Adam(model.parameters(), "
               "lr=lr); steps = num_epochs * ceil(N / batch_size); schedule = LambdaLR(optimizer, lambda s: 1 - s / steps); "
               "per epoch order = torch.randperm(N, generator=...); per batch b: train_step(model, optimizer, src[b], "
               "tgt[b], max_norm); schedule.step(). return model.eval().")
def check_train(train_translator):
    import torch

    from dlcourse import data

    src, tgt = date_codes(TRAIN_SIZE, "train", seed=0)
    model = train_translator(src, tgt)
    assert is_a(model, torch.nn.Module), "train_translator must return the trained model (a torch.nn.Module)"
    model.eval()
    test_src, test_tgt = date_codes(TEST_SIZE, "test", seed=1)
    predicted = greedy_by_recomputation(model, test_src, data.DATE_TARGET_LENGTH)
    score = exact_match(predicted, test_tgt)
    characters = float((predicted == test_tgt).float().mean())
    assert score >= EXACT_BAR, (
        f"on {TEST_SIZE:,} held-out dates, {score:.1%} are translated exactly (needs {EXACT_BAR:.0%}); "
        f"{characters:.1%} of the characters are right")
