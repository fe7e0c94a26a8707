"""The pointwise steps that ``fused`` compiles on CUDA, compiled here by inductor's CPU backend: they
compile with only their first dimension dynamic (one graph for every row count) and give eager's
results. The model's use of them on CUDA is checked against eager in test_ida_vlm_gpu.py."""
from __future__ import annotations

import torch
from torch._dynamo.utils import counters

from movieid.models.ida_vlm import fused


def _steps(rows: int, dtype: torch.dtype):
    """Each step with arguments of the model's layout (hidden 64, 4 heads of 16)."""
    g = torch.Generator().manual_seed(rows)
    rand = lambda *shape: torch.randn(*shape, generator=g).to(dtype)  # noqa: E731
    x, delta, weight, bias = rand(rows, 64), rand(rows, 64), rand(64), rand(64)
    qk = rand(rows, 3, 4, 16)[:, :2]  # a view of a layer's fused q, k, v product
    angles = torch.rand(rows, 1, 1, 16, generator=g) * 6
    return [(fused.rms_norm, (x, weight, 1e-6)), (fused.add_rms_norm, (x, delta, weight, 1e-6)),
            (fused.add_layer_norm, (x, delta, weight, bias, 1e-6)), (fused.swiglu, (x, delta)),
            (fused.rotary, (qk, angles.cos(), angles.sin())),
            (fused.rotary_logn, (qk, angles.cos(), angles.sin(), rand(rows, 1, 1)))]


def test_compiled_steps_equal_eager_for_any_number_of_rows(monkeypatch):
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor, "compile_threads", 1)  # no compile workers outliving the test
    counters.clear()
    with torch.inference_mode():
        for rows in (7, 13):
            for fn, args in _steps(rows, torch.bfloat16):
                got, want = fused._run_compiled(fn, args), fn(*args)
                got, want = (got, want) if isinstance(want, tuple) else ((got,), (want,))
                for a, b in zip(got, want):
                    assert a.shape == b.shape and a.dtype == b.dtype
                    # eager's roundings kept: at most a bf16 step or two apart (2 ** -7 relative each)
                    torch.testing.assert_close(a, b, rtol=2 ** -6, atol=1e-5)
            if rows == 7:
                graphs = counters["stats"]["unique_graphs"]
    assert graphs == len(_steps(1, torch.bfloat16))
    assert counters["stats"]["unique_graphs"] == graphs  # 13 rows reused the graphs compiled for 7
