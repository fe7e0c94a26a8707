"""The decode step's attention in three Triton kernels (CUDA): a shared prefix read once for all its
rows, each row's own columns read once, and nothing else.

A decode step is bound by reading the cache: one query per row and head against every key the
row holds. Torch's attention kernels work in tiles of 64 or more queries, so one query computes a
tile that is mostly thrown away, and merging a shared prefix's part with the rows' part by
log-sum-exp costs a dozen small kernels per layer. Here:

* ``_prefix_kernel``, per group of rows sharing a prefix: the group's queries (a tile of rows, one
  head) against the prefix's single copy, with tensor-core products: each prefix key is read
  once per tile of rows; it leaves the unnormalised sum, max and sum of weights per row and head;
* ``_rows_kernel``, per row, head and ``SPLIT`` columns: an online softmax in float32 over the
  row's own columns among them, ``first[row]`` to ``column`` (inclusive; the left padding and the
  columns not yet written are not read at all). Splitting the columns keeps a small batch from
  running as a few long serial loops (one row alone: 32 programs for 132 multiprocessors; a
  profile of a film's batches of 4 shots on the H200 had this kernel at 51 % of the GPU time).
  The query is the first row of a tile of 16 so that the products are tensor-core ones: Triton's
  pipeliner then loads keys and values ahead, which it does not for plain loads (on an H200 at
  152 rows: 4.1 TB/s of the cache instead of 3.0, with both loads issued first 3.6);
* ``_combine_kernel``, per row and head: the splits and the prefix state (rows sharing nothing
  have none) merged by log-sum-exp, normalised, in the query's dtype.

All read their bounds from device tensors, so a CUDA graph of the step can be replayed. The
result equals plain softmax attention up to float32 rounding (the weights are rounded to the
values' dtype for their product with the values, as flash attention does). With
``TRITON_INTERPRET=1`` set before Triton is imported, the same kernels run on the CPU through
Triton's interpreter, and the model uses them there too (that is how the CPU tests check them).
"""
import functools
import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # Triton comes with torch's CUDA builds; without it the torch path is used
    triton = None

    class tl:  # noqa: N801 - only so that the kernels' annotations resolve
        constexpr = None

# A row's columns per program of the rows' kernel (so that a small batch still spreads over the
# GPU's multiprocessors; 256: 1392 columns are 6 programs), keys per step of each program's loop,
# warps and pipeline stages: bench/ida_vlm.py sweeps the last three on an H200 (one layer at 152
# rows: these 0.867 ms, the sweep's best 0.866 ms with 64 keys and 4 warps; 128 keys, 2 warps and
# 3 stages 2.3 ms in a scratch sweep, where these took 0.834 ms).
SPLIT = 256
BLOCK_N = 32
ROWS_WARPS = 2
ROWS_STAGES = 3
PREFIX_BLOCK_M = 32   # rows of a group per prefix tile
PREFIX_BLOCK_N = 64


def _device_function(fn):
    """A Triton function the kernels call (inlined into them), or ``fn`` itself without Triton."""
    return triton.jit(fn) if triton is not None else fn


@_device_function
def _weights(q, k, cmask, m_i, l_i, scale, IEEE: tl.constexpr):
    """One online-softmax step of a tile of queries ``q`` over a block of keys ``k`` (``cmask``:
    the block's columns to use): the block's unnormalised weights, the factor that rescales what
    came before, and the new running max and sum of weights."""
    if IEEE:
        s = tl.dot(q, tl.trans(k), input_precision="ieee")
    else:
        s = tl.dot(q, tl.trans(k))
    s = tl.where(cmask[None, :], s * scale, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = tl.exp(m_i - m_new)
    p = tl.exp(s - m_new[:, None])
    return p, alpha, m_new, l_i * alpha + tl.sum(p, 1)


@_device_function
def _accumulate(acc, alpha, p, v, IEEE: tl.constexpr):
    """The running sum of weighted values after a block (weights rounded to the values' dtype)."""
    if IEEE:
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
    else:
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return acc


def _prefix_kernel(Q, K, V, Acc, M, L, row0, n, P, H, D, sqb, sqh, sqd, skh, skn, skd, svh, svn, svd, scale,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                   IEEE: tl.constexpr):
    tile, h = tl.program_id(0), tl.program_id(1)
    rows = tile * BLOCK_M + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, BLOCK_D)
    rmask, dmask = rows < n, dims < D
    q = tl.load(Q + (row0 + rows)[:, None] * sqb + h * sqh + dims[None, :] * sqd,
                mask=rmask[:, None] & dmask[None, :], other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start in range(0, P, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        cmask = cols < P
        k = tl.load(K + h * skh + cols[:, None] * skn + dims[None, :] * skd, mask=cmask[:, None] & dmask[None, :],
                    other=0.0)
        p, alpha, m_i, l_i = _weights(q, k, cmask, m_i, l_i, scale, IEEE)
        v = tl.load(V + h * svh + cols[:, None] * svn + dims[None, :] * svd, mask=cmask[:, None] & dmask[None, :],
                    other=0.0)
        acc = _accumulate(acc, alpha, p, v, IEEE)
    state = (row0 + rows) * H + h
    tl.store(Acc + state[:, None] * D + dims[None, :], acc, mask=rmask[:, None] & dmask[None, :])
    tl.store(M + state, m_i, mask=rmask)
    tl.store(L + state, l_i, mask=rmask)


def _rows_kernel(Q, K, V, First, Column, Pacc, Pm, Pl, H, S, D, sqb, sqh, sqd, skb, skh, skn, skd,
                 svb, svh, svn, svd, scale, SPLIT: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                 IEEE: tl.constexpr):
    b, h, split = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    dims = tl.arange(0, BLOCK_D)
    # The row's one query as the first of a tile of 16 (the rest zeros): the products then run on
    # tensor cores, whose operands Triton's pipeliner loads ahead; plain loads it does not.
    tile = tl.arange(0, 16)
    dmask, real = dims < D, tile == 0
    q = tl.load(Q + b * sqb + h * sqh + tile[:, None] * 0 + dims[None, :] * sqd,
                mask=real[:, None] & dmask[None, :], other=0.0)
    first = tl.load(First + b)
    lo = tl.maximum(first, split * SPLIT)
    hi = tl.minimum(tl.load(Column) + 1, (split + 1) * SPLIT)
    m_i = tl.full([16], float("-inf"), tl.float32)
    l_i = tl.zeros([16], tl.float32)
    acc = tl.zeros([16, BLOCK_D], tl.float32)
    # A split outside the row's columns (lo >= hi) runs no step, so every step sees a column.
    for start in range(tl.where(lo < hi, (lo // BLOCK_N) * BLOCK_N, hi), hi, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        cmask = (cols >= lo) & (cols < hi)
        k = tl.load(K + b * skb + h * skh + cols[:, None] * skn + dims[None, :] * skd,
                    mask=cmask[:, None] & dmask[None, :], other=0.0)
        p, alpha, m_i, l_i = _weights(q, k, cmask, m_i, l_i, scale, IEEE)
        v = tl.load(V + b * svb + h * svh + cols[:, None] * svn + dims[None, :] * svd,
                    mask=cmask[:, None] & dmask[None, :], other=0.0)
        acc = _accumulate(acc, alpha, p, v, IEEE)
    part = (b * H + h) * S + split
    tl.store(Pacc + part * D + tile[:, None] * 0 + dims[None, :], acc, mask=real[:, None] & dmask[None, :])
    tl.store(Pm + part + tile * 0, m_i, mask=real)
    tl.store(Pl + part + tile * 0, l_i, mask=real)


def _combine_kernel(Pacc, Pm, Pl, Grouped, Acc, M, L, Out, H, S, D, sob, soh, sod,
                    BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr):
    b, h = tl.program_id(0), tl.program_id(1)
    dims, splits = tl.arange(0, BLOCK_D), tl.arange(0, BLOCK_S)
    dmask, smask = dims < D, splits < S
    grouped = tl.load(Grouped + b) != 0
    state = b * H + h
    m_prefix = tl.load(M + state, mask=grouped, other=float("-inf"))
    l_prefix = tl.load(L + state, mask=grouped, other=0.0)
    acc_prefix = tl.load(Acc + state * D + dims, mask=dmask & grouped, other=0.0)
    parts = state * S + splits
    m_parts = tl.load(Pm + parts, mask=smask, other=float("-inf"))
    l_parts = tl.load(Pl + parts, mask=smask, other=0.0)
    acc_parts = tl.load(Pacc + parts[:, None] * D + dims[None, :], mask=smask[:, None] & dmask[None, :], other=0.0)
    top = tl.maximum(tl.max(m_parts, 0), m_prefix)
    weights, w_prefix = tl.exp(m_parts - top), tl.exp(m_prefix - top)
    total = tl.sum(l_parts * weights, 0) + l_prefix * w_prefix
    acc = tl.sum(acc_parts * weights[:, None], 0) + acc_prefix * w_prefix
    tl.store(Out + b * sob + h * soh + dims * sod, (acc / total).to(Out.dtype.element_ty), mask=dmask)


@functools.cache
def _kernels():
    return triton.jit(_prefix_kernel), triton.jit(_rows_kernel), triton.jit(_combine_kernel)


def interpreted() -> bool:
    return triton is not None and os.environ.get("TRITON_INTERPRET") == "1"


@functools.cache
def available(device: torch.device) -> bool:
    """Whether the kernels run here and agree with plain float32 attention (checked once per
    device on a small random problem, so a Triton that cannot build them falls back, not breaks);
    on the CPU only under Triton's interpreter."""
    if triton is None or device.type != ("cpu" if interpreted() else "cuda"):
        return False
    try:
        return check(device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    except Exception:  # a compile or launch error of any kind: the torch path is used
        return False


def check(device, dtype) -> bool:
    """The kernels against plain softmax attention over the prefix and each row's columns
    together, on a random problem with a shared prefix, a row sharing nothing, left padding and
    columns past the last one written."""
    g = torch.Generator(device=device).manual_seed(0)
    rows, heads, dim, capacity, prefix_len = 3, 2, 80, 48, 40

    def rand(*shape):
        return torch.randn(*shape, generator=g, device=device).to(dtype)

    q, keys, values = rand(rows, heads, 1, dim), rand(rows, heads, capacity, dim), rand(rows, heads, capacity, dim)
    prefix_keys, prefix_values = rand(1, heads, prefix_len, dim), rand(1, heads, prefix_len, dim)
    first = torch.tensor([5, 0, 17], device=device)
    column = torch.tensor([30], device=device)
    out = decode_attention(q, keys, values, first, column, [(slice(0, 2), prefix_keys, prefix_values)])
    columns = torch.arange(capacity, device=device)
    own = (columns >= first[:, None]) & (columns <= column)                       # [rows, capacity]
    grouped = torch.tensor([True, True, False], device=device)
    scale = dim ** -0.5
    scores = torch.cat([(q.float() @ prefix_keys.float().transpose(-1, -2) * scale)
                        .masked_fill(~grouped[:, None, None, None], float("-inf")),
                        (q.float() @ keys.float().transpose(-1, -2) * scale)
                        .masked_fill(~own[:, None, None, :], float("-inf"))], dim=-1)
    expected = scores.softmax(dim=-1) @ torch.cat([prefix_values.expand(rows, -1, -1, -1), values], dim=2).float()
    tolerance = 1e-5 if dtype == torch.float32 else 3e-2
    return bool(torch.allclose(out.float(), expected, atol=tolerance, rtol=tolerance))


def decode_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, first: torch.Tensor,
                     column: torch.Tensor, shared: list[tuple[slice, torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """``q [B, heads, 1, D]`` against row b's cache columns ``first[b]..column`` (``keys``/``values``
    ``[B, heads, capacity, D]``) and, for the rows of each ``(rows, prefix_keys, prefix_values)``
    in ``shared`` (prefix ``[1, heads, P, D]``), that prefix -> ``[B, heads, 1, D]`` in q's dtype."""
    prefix_kernel, rows_kernel, combine_kernel = _kernels()
    batch, heads, _, dim = q.shape
    block_d = max(16, triton.next_power_of_2(dim))
    scale = dim ** -0.5
    state = max(1, batch * heads) if shared else 1
    acc = torch.empty(state * dim, dtype=torch.float32, device=q.device)
    top = torch.empty(state, dtype=torch.float32, device=q.device)
    total = torch.empty(state, dtype=torch.float32, device=q.device)
    grouped = torch.zeros(batch, dtype=torch.int32, device=q.device)
    for rows, prefix_keys, prefix_values in shared:
        n = rows.stop - rows.start
        grouped[rows] = 1
        prefix_kernel[(triton.cdiv(n, PREFIX_BLOCK_M), heads)](
            q, prefix_keys, prefix_values, acc, top, total, rows.start, n, prefix_keys.shape[2], heads, dim,
            q.stride(0), q.stride(1), q.stride(3), prefix_keys.stride(1), prefix_keys.stride(2), prefix_keys.stride(3),
            prefix_values.stride(1), prefix_values.stride(2), prefix_values.stride(3), scale,
            BLOCK_M=PREFIX_BLOCK_M, BLOCK_N=PREFIX_BLOCK_N, BLOCK_D=block_d, IEEE=q.dtype == torch.float32)
    splits = triton.cdiv(keys.shape[2], SPLIT)
    part_acc = torch.empty(batch * heads * splits * dim, dtype=torch.float32, device=q.device)
    part_top = torch.empty(batch * heads * splits, dtype=torch.float32, device=q.device)
    part_total = torch.empty(batch * heads * splits, dtype=torch.float32, device=q.device)
    rows_kernel[(batch, heads, splits)](
        q, keys, values, first, column, part_acc, part_top, part_total, heads, splits, dim,
        q.stride(0), q.stride(1), q.stride(3), *(keys.stride(i) for i in (0, 1, 2, 3)),
        *(values.stride(i) for i in (0, 1, 2, 3)), scale,
        SPLIT=SPLIT, BLOCK_N=BLOCK_N, BLOCK_D=block_d, IEEE=q.dtype == torch.float32, num_warps=ROWS_WARPS,
        num_stages=ROWS_STAGES)
    out = torch.empty(batch, heads, 1, dim, dtype=q.dtype, device=q.device)
    combine_kernel[(batch, heads)](
        part_acc, part_top, part_total, grouped, acc, top, total, out, heads, splits, dim,
        out.stride(0), out.stride(1), out.stride(3), BLOCK_S=triton.next_power_of_2(splits), BLOCK_D=block_d)
    return out
