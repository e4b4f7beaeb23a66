"""Horovod as built by scripts/setup_env.py really runs: 2 processes, Gloo, PyTorch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
def test_horovodrun_two_ranks_agree(tmp_path):
    horovodrun = Path(sys.executable).parent / "horovodrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(horovodrun), "-np", "2", "-H", "localhost:2", "--gloo",
                           sys.executable, str(HERE / "hvd_smoke.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["size"] == 2 for r in ranks)
    assert all(r["allreduce_sum"] == 3.0 for r in ranks)
    # Different seeds per rank, yet identical parameters: broadcast + averaged gradients worked.
    assert ranks[0]["params"] == ranks[1]["params"]
    # Averaging two equal shards' gradients is the full-batch gradient: one process on
    # all the data, starting from rank 0's weights, must end at the same parameters.
    torch = pytest.importorskip("torch")
    torch.manual_seed(100)
    net = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(0)
    X, y = torch.randn(8, 4, generator=gen), torch.randn(8, 1, generator=gen)
    initial = [p.detach().flatten().tolist() for p in net.parameters()]
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(X), y).backward()
        opt.step()
    expected = [p.detach().flatten().tolist() for p in net.parameters()]
    assert ranks[0]["params"] != initial
    for got, want in zip(ranks[0]["params"], expected):
        assert got == pytest.approx(want, abs=1e-6)
