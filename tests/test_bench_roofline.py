"""bench.roofline: the work it counts is the arithmetic the kernels do, and the peak it measures bounds what
PyTorch reaches on the same threads (a peak measured too low would make every runtime look closer to the
CPU's limit than it is)."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from bench.roofline import fma_peak, gflop, vector_width


def test_work_counts_matrix_products_convolutions_and_the_cpus_fused_attention():
    a, b = torch.randn(64, 32), torch.randn(32, 48)
    assert gflop(lambda: a @ b) == pytest.approx(2 * 64 * 32 * 48 / 1e9)

    x, w = torch.randn(2, 3, 16, 16), torch.randn(8, 3, 3, 3)
    assert gflop(lambda: F.conv2d(x, w, padding=1)) == pytest.approx(2 * (2 * 8 * 16 * 16) * (3 * 3 * 3) / 1e9)

    batch, heads, queries, keys, dim = 2, 4, 10, 12, 16
    q, k, v = (
        torch.randn(batch, heads, queries, dim),
        torch.randn(batch, heads, keys, dim),
        torch.randn(batch, heads, keys, dim),
    )
    scores_and_values = 2 * (2 * batch * heads * queries * keys * dim)
    assert gflop(lambda: F.scaled_dot_product_attention(q, k, v)) == pytest.approx(scores_and_values / 1e9)

    q.requires_grad_()
    with_backward = gflop(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward())
    assert with_backward > 2 * scores_and_values / 1e9  # the backward's products are counted too


@pytest.mark.alone  # two measurements of the machine's speed: nothing else may run beside them
def test_the_fma_peak_bounds_the_matrix_products_pytorch_runs_on_one_thread():
    peak = fma_peak(1, vector_width())
    if peak is None:
        pytest.skip("no C compiler (or not an x86 CPU): the peak cannot be measured here")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
        a @ b
        best = 0.0
        for _ in range(5):
            start = time.perf_counter()
            a @ b
            best = max(best, 2 * 1024**3 / (time.perf_counter() - start) / 1e9)
    finally:
        torch.set_num_threads(threads)
    # MKL's sgemm reaches 70-90 % of the FMA peak; above it, the kernel measured too little.
    assert 0.3 * peak < best < 1.05 * peak, f"sgemm {best:.0f} GFLOP/s against a measured peak of {peak:.0f}"
