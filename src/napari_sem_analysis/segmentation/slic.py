"""The two SLIC kernels: grid-local numpy (threaded) and the same algorithm in PyTorch (CUDA/MPS)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# pixels per processing chunk of a quad block: the temporaries of one chunk stay in the CPU cache
_SLIC_CHUNK = 1 << 16


def _grid_layout(img: np.ndarray, step: int, compactness: float, mask):
    """The grid shared by both kernels: cells of even size S (h2 = S/2) in a (gh, gw) grid.

    Returns ``(S, h2, gh, gw, pad, valid)``: the image padded to whole cells and
    divided by ``compactness`` (intensity pre-scaled: no multiply per pass),
    and which padded pixels are inside the image (and the mask).
    """
    H, W = img.shape
    S = max(2, 2 * int(round(step / 2)))
    gh, gw = -(-H // S), -(-W // S)
    pad = np.zeros((gh * S, gw * S), np.float32)
    pad[:H, :W] = img / np.float32(compactness)
    valid = np.zeros((gh * S, gw * S), bool)
    valid[:H, :W] = True if mask is None else mask
    return S, S // 2, gh, gw, pad, valid


# one long function on purpose: the hot loop shares two dozen per-block arrays (bands, carries, weights);
# split into functions they would travel as long argument lists
def _slic_numpy(img: np.ndarray, step: int, compactness: float, max_iter: int, mask, callback=None) -> np.ndarray:
    """Grid-local SLIC in numpy (the 4 quarter blocks in up to 4 threads).

    Same algorithm and layout as :func:`_slic_grid` (the torch version used
    on CUDA): the image is cut into cells of even size S, and each quarter of
    a cell compares its pixels with the centres of the 4 nearest cells only.
    ``|I - c|^2 + spatial`` is compared as ``c^2 + spatial - 2 I c`` (the
    ``I^2`` term is the same for every candidate). Returns labels 1..gh*gw.

    Each quarter block is processed in bands of cell rows small enough for
    the cache. The centre update needs no per-pixel label for the pixel
    counts and coordinate sums: the winner among the 4 candidates is two
    bits (row, column), and integer sums of those bits over the rows of a
    band (one small matrix product) give them exactly. The intensity sums
    are one weighted ``bincount`` per band, which starts from the running
    sums of the previous bands, so every sum is accumulated in the same
    order (and to the same float64 value) as one ``bincount`` per block.
    """
    H, W = img.shape
    S, h2, gh, gw, pad, valid = _grid_layout(img, step, compactness, mask)
    Hp, Wp = pad.shape
    any_invalid = not valid.all()
    I6 = pad.reshape(gh, 2, h2, gw, 2, h2)
    V6 = valid.reshape(gh, 2, h2, gw, 2, h2)
    K = gh * gw
    wS = np.float32(1.0 / (S * S))
    cell = h2 * gw * h2  # pixels of one row of quarter cells
    nr = max(1, min(gh, _SLIC_CHUNK // cell))  # cell rows per band
    bands = [(a, min(a + nr, gh)) for a in range(0, gh, nr)]
    # a band's pixels belong to clusters lo..lo+M-1, lo = (a-1)*gw - 1; they are bincounted
    # as local ids, after M "carry" entries that restart every bin from its running sum
    M = (nr + 2) * gw + 2
    P = gw + 1  # cluster c is at c + P in the (padded) accumulators
    L = P + (gh + nr + 3) * gw + 2
    fdt = np.float32 if h2 <= 4096 else np.float64  # exact integer sums in the matrix product
    rw = np.stack([np.ones(h2), np.arange(h2)]).astype(fdt)  # (2, h2): sum, sum of r
    colw = np.arange(h2, dtype=np.float64)
    lbase = (
        np.arange(nr, dtype=np.intp)[:, None, None, None] * gw
        + np.arange(gw, dtype=np.intp)[None, None, :, None]
        + (gw + 1)
    )
    carry = np.arange(M, dtype=np.intp)
    quads = []
    for qy in (0, 1):
        for qx in (0, 1):
            Iq = np.ascontiguousarray(I6[:, qy, :, :, qx, :])  # (gh, h2, gw, h2)
            Vq = np.ascontiguousarray(V6[:, qy, :, :, qx, :]) if any_invalid else None
            yq = (
                np.arange(gh, dtype=np.float32)[:, None] * S + qy * h2 + np.arange(h2, dtype=np.float32)[None, :]
            ).reshape(gh, h2, 1, 1)
            xq = (
                np.arange(gw, dtype=np.float32)[:, None] * S + qx * h2 + np.arange(h2, dtype=np.float32)[None, :]
            ).reshape(1, 1, gw, h2)
            c0 = (qy - 1) * gw + qx - 1
            # intensity weights of each band as float64, after room for the carry
            wts = []
            for a, b in bands:
                w = np.empty(M + (b - a) * cell)
                w[M:] = Iq[a:b].ravel()
                wts.append(w)
            if Vq is None:
                vstats = None
            else:  # valid pixels per quarter cell: count, sum of rows, sum of columns
                vr = np.matmul(rw, Vq.reshape(gh, h2, gw * h2).astype(fdt)).reshape(gh, 2, gw, h2)
                vstats = (
                    vr[:, 0].sum(-1, dtype=np.float64),
                    vr[:, 1].sum(-1, dtype=np.float64),
                    vr[:, 0].astype(np.float64) @ colw,
                )
            quads.append(
                dict(
                    q=(qy, qx),
                    I=Iq,
                    V=Vq,
                    y=yq,
                    x=xq,
                    c0=c0,
                    wts=wts,
                    vstats=vstats,
                    offs=[(dy, dx) for dy in (qy - 1, qy) for dx in (qx - 1, qx)],
                    lbase=lbase + c0,
                    y0=(np.arange(gh, dtype=np.float64) * S + qy * h2)[:, None],
                    x0=(np.arange(gw, dtype=np.float64) * S + qx * h2)[None, :],
                )
            )
    full = float(h2 * h2), float(h2 * h2 * (h2 - 1) // 2)

    # long on purpose, as _slic_numpy around it: one quarter block's pass over its bands, with its scratch
    # buffers allocated once per call and reused by every band (split up, they would travel as arguments)
    def run_quad(Q, cyP, cxP, ciP, out_q):
        """Assign the pixels of one quarter block; sums per cluster (or labels into out_q)."""
        d = np.empty((4, nr, h2, gw, h2), np.float32)
        tmp = np.empty((nr, h2, gw, h2), np.float32)
        m01 = np.empty((nr, h2, gw, h2), bool)
        m23 = np.empty_like(m01)
        hi = np.empty_like(m01)
        hc = np.empty_like(m01)
        F = np.empty((3, nr, h2, gw, h2), fdt)
        idx = np.empty(M + nr * cell, np.intp)
        idx[:M] = carry
        if out_q is None:
            acc = np.zeros((4, L))  # count, sum y, sum x, sum intensity
        for j, (a, b) in enumerate(bands):
            n = b - a
            sz = n * cell
            Ic = Q["I"][a:b]
            D = d[:, :n]
            T = tmp[:n]
            for k, (dy, dx) in enumerate(Q["offs"]):
                sl = (slice(1 + dy + a, 1 + dy + b), slice(1 + dx, 1 + dx + gw))
                cys = cyP[sl].reshape(n, 1, gw, 1)
                cxs = cxP[sl].reshape(n, 1, gw, 1)
                cis = ciP[sl].reshape(n, 1, gw, 1)
                ys = np.square(Q["y"][a:b] - cys) * wS  # (n, h2, gw, 1)
                xs = np.square(Q["x"] - cxs) * wS + cis * cis  # (n, 1, gw, h2)
                np.add(ys, xs, out=D[k])
                np.multiply(Ic, 2 * cis, out=T)
                np.subtract(D[k], T, out=D[k])
            # argmin of 4 candidates by a tournament: winner row bit `hi`, column bit `col`
            col, m23n, hin, hcn = m01[:n], m23[:n], hi[:n], hc[:n]
            np.less(D[1], D[0], out=col)
            np.minimum(D[0], D[1], out=D[0])
            np.less(D[3], D[2], out=m23n)
            np.minimum(D[2], D[3], out=D[2])
            np.less(D[2], D[0], out=hin)
            np.copyto(col, m23n, where=hin)
            lab = idx[M : M + sz].reshape(n, h2, gw, h2)
            np.multiply(hin, gw, out=lab)
            np.add(lab, col, out=lab)
            np.add(lab, Q["lbase"][:n], out=lab)  # cluster - lo
            if out_q is not None:
                out_q[a:b] = lab + (a - 1) * gw
                continue
            # intensity sums: one bincount, continuing from the running sums of bins lo..lo+M-1
            s0 = a * gw
            w = Q["wts"][j]
            if Q["V"] is not None:
                Vc = Q["V"][a:b]
                np.copyto(lab, M, where=~Vc)  # outside the mask: a bin that is dropped
                np.logical_and(hin, Vc, out=hin)
                np.logical_and(col, Vc, out=col)
            w[:M] = acc[3, s0 : s0 + M]
            acc[3, s0 : s0 + M] = np.bincount(idx[: M + sz], weights=w, minlength=M + 1)[:M]
            # counts and coordinate sums per (quarter cell, winner): integer sums of the bits
            np.logical_and(hin, col, out=hcn)
            Fn = F[:, :n]
            np.copyto(Fn[0], hin)
            np.copyto(Fn[1], col)
            np.copyto(Fn[2], hcn)
            R = np.matmul(rw, Fn.reshape(3, n, h2, gw * h2)).reshape(3, n, 2, gw, h2)
            c_ = R[:, :, 0].sum(-1, dtype=np.float64)  # (3, n, gw): hi, col, hi&col
            r_ = R[:, :, 1].sum(-1, dtype=np.float64)
            x_ = R[:, :, 0].astype(np.float64) @ colw
            if Q["vstats"] is None:
                tc, tr, tx = full[0], full[1], full[1]
            else:
                tc, tr, tx = (v[a:b] for v in Q["vstats"])
            y0 = Q["y0"][a:b]
            for k, (sc, sr, sx_) in enumerate(
                (
                    (tc - c_[0] - c_[1] + c_[2], tr - r_[0] - r_[1] + r_[2], tx - x_[0] - x_[1] + x_[2]),
                    (c_[1] - c_[2], r_[1] - r_[2], x_[1] - x_[2]),
                    (c_[0] - c_[2], r_[0] - r_[2], x_[0] - x_[2]),
                    (c_[2], r_[2], x_[2]),
                )
            ):
                st = P + a * gw + Q["c0"] + (k >> 1) * gw + (k & 1)
                acc[0, st : st + n * gw] += sc.ravel()
                acc[1, st : st + n * gw] += (y0 * sc + sr).ravel()
                acc[2, st : st + n * gw] += (Q["x0"] * sc + sx_).ravel()
        return None if out_q is not None else acc[:, P : P + K]

    def update(sums, cy, cx, ci):
        tot = np.zeros((4, K))
        for s in sums:  # in block order, as one bincount per block would add them
            tot += s
        cnt, sy, sx, si = tot
        has = cnt > 0
        safe = np.maximum(cnt, 1)
        cy = np.where(has, sy / safe, cy.ravel()).reshape(gh, gw).astype(np.float32)
        cx = np.where(has, sx / safe, cx.ravel()).reshape(gh, gw).astype(np.float32)
        ci = np.where(has, si / safe, ci.ravel()).reshape(gh, gw).astype(np.float32)
        return cy, cx, ci

    cy = np.minimum(np.arange(gh, dtype=np.float32) * S + S / 2, H - 0.5)
    cx = np.minimum(np.arange(gw, dtype=np.float32) * S + S / 2, W - 0.5)
    cy = np.ascontiguousarray(np.broadcast_to(cy[:, None], (gh, gw)))
    cx = np.ascontiguousarray(np.broadcast_to(cx[None, :], (gh, gw)))
    # initial intensities: mean of each cell
    base = np.arange(gh, dtype=np.intp)[:, None, None, None] * gw + np.arange(gw, dtype=np.intp)[None, None, :, None]
    cnt = np.zeros(K + 1)
    si = np.zeros(K + 1)
    for Q in quads:
        lf = np.broadcast_to(base, Q["I"].shape).ravel()
        if Q["V"] is not None:
            lf = np.where(Q["V"].ravel(), lf, K)
        cnt += np.bincount(lf, minlength=K + 1)
        si += np.bincount(lf, weights=Q["I"].ravel().astype(np.float64), minlength=K + 1)
    ci = np.where(cnt[:K] > 0, si[:K] / np.maximum(cnt[:K], 1), 0).reshape(gh, gw).astype(np.float32)
    big = np.float32(1e9)
    out = np.empty((gh, 2, h2, gw, 2, h2), np.int32)
    # the 4 blocks are independent: numpy releases the GIL in the array passes, so threads overlap
    with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
        for it in range(max_iter + 1):
            cyP = np.full((gh + 2, gw + 2), big, np.float32)
            cxP = np.full((gh + 2, gw + 2), big, np.float32)
            ciP = np.zeros((gh + 2, gw + 2), np.float32)
            cyP[1:-1, 1:-1], cxP[1:-1, 1:-1], ciP[1:-1, 1:-1] = cy, cx, ci
            final = it == max_iter
            sums = list(
                pool.map(
                    lambda Q, cyP=cyP, cxP=cxP, ciP=ciP, final=final: run_quad(
                        Q, cyP, cxP, ciP, out[:, Q["q"][0], :, :, Q["q"][1], :] if final else None
                    ),
                    quads,
                )
            )
            if not final:
                cy, cx, ci = update(sums, cy, cx, ci)
            if callback is not None:
                callback(it, max_iter)
    return out.reshape(Hp, Wp)[:H, :W]


# one long function on purpose, as _slic_numpy: the same algorithm, step by step, in torch
def _slic_grid(
    img: np.ndarray, step: int, compactness: float, max_iter: int, mask, device="cpu", callback=None
) -> np.ndarray:
    """Grid-local SLIC, vectorised with torch (runs on CPU or CUDA).

    The image is padded to whole grid cells of even size S and viewed as
    (gh, 2, S/2, gw, 2, S/2) blocks: each quarter of a cell only needs the
    centres of the 4 nearest cells (the ones whose 2S x 2S search windows
    cover it in classic SLIC), which are broadcast over the quarter, so no
    gather is needed. Returns labels 1..gh*gw (int32 numpy).
    """
    import torch

    from .._device import select_device

    dev = select_device("cpu" if device == "torch-cpu" else device)
    H, W = img.shape
    S, h2, gh, gw, pad, valid = _grid_layout(img, step, compactness, mask)
    Hp, Wp = pad.shape
    I6 = torch.from_numpy(pad).to(dev).view(gh, 2, h2, gw, 2, h2)
    V6 = torch.from_numpy(valid).to(dev).view(gh, 2, h2, gw, 2, h2)
    K = gh * gw
    wS = 1.0 / (S * S)
    base = torch.arange(gh, device=dev).view(gh, 1, 1, 1) * gw + torch.arange(gw, device=dev).view(1, 1, gw, 1)
    quads = []
    for qy in (0, 1):
        for qx in (0, 1):
            Iq = I6[:, qy, :, :, qx, :].contiguous()  # (gh, h2, gw, h2)
            Vq = V6[:, qy, :, :, qx, :].reshape(-1)
            yq = (
                torch.arange(gh, device=dev, dtype=torch.float32).view(gh, 1) * S
                + qy * h2
                + torch.arange(h2, device=dev, dtype=torch.float32).view(1, h2)
            ).view(gh, h2, 1, 1)
            xq = (
                torch.arange(gw, device=dev, dtype=torch.float32).view(gw, 1) * S
                + qx * h2
                + torch.arange(h2, device=dev, dtype=torch.float32).view(1, h2)
            ).view(1, 1, gw, h2)
            offs = [(dy, dx) for dy in (qy - 1, qy) for dx in (qx - 1, qx)]
            code = torch.tensor([dy * gw + dx for dy, dx in offs], device=dev)
            quads.append(
                dict(
                    q=(qy, qx),
                    I=Iq,
                    V=Vq,
                    y=yq,
                    x=xq,
                    offs=offs,
                    code=code,
                    Yf=yq.expand(gh, h2, gw, h2).reshape(-1)[Vq],
                    Xf=xq.expand(gh, h2, gw, h2).reshape(-1)[Vq],
                    If=Iq.reshape(-1)[Vq],
                )
            )
    Yf = torch.cat([q["Yf"] for q in quads])
    Xf = torch.cat([q["Xf"] for q in quads])
    If = torch.cat([q["If"] for q in quads])

    def update(labs, cy, cx, ci):
        lf = torch.cat([lab.reshape(-1)[q["V"]] for lab, q in zip(labs, quads)])
        cnt = torch.bincount(lf, minlength=K).to(torch.float32)
        has = cnt > 0
        safe = cnt.clamp(min=1)
        ny = torch.bincount(lf, weights=Yf, minlength=K).to(torch.float32) / safe
        nx = torch.bincount(lf, weights=Xf, minlength=K).to(torch.float32) / safe
        ni = torch.bincount(lf, weights=If, minlength=K).to(torch.float32) / safe
        cy = torch.where(has, ny, cy.reshape(-1)).view(gh, gw)
        cx = torch.where(has, nx, cx.reshape(-1)).view(gh, gw)
        ci = torch.where(has, ni, ci.reshape(-1)).view(gh, gw)
        return cy, cx, ci

    # initial centres: middle of each cell (clipped to the image), cell mean intensity
    cy = (torch.arange(gh, device=dev, dtype=torch.float32) * S + S / 2).clamp(max=H - 0.5)
    cx = (torch.arange(gw, device=dev, dtype=torch.float32) * S + S / 2).clamp(max=W - 0.5)
    cy = cy.view(gh, 1).expand(gh, gw).contiguous()
    cx = cx.view(1, gw).expand(gh, gw).contiguous()
    ci = torch.zeros(gh, gw, device=dev)
    own = [base.expand(gh, h2, gw, h2) for _ in quads]
    _, _, ci = update(own, cy, cx, ci)
    big = 1e9
    labs = own
    for it in range(max_iter + 1):
        cyP = torch.full((gh + 2, gw + 2), big, device=dev)
        cxP = torch.full((gh + 2, gw + 2), big, device=dev)
        ciP = torch.zeros((gh + 2, gw + 2), device=dev)
        cyP[1:-1, 1:-1], cxP[1:-1, 1:-1], ciP[1:-1, 1:-1] = cy, cx, ci
        labs = []
        for q in quads:
            # |I - c|^2 + spatial = I^2 + (c^2 - 2 I c) + spatial: I^2 is the same for every
            # candidate, so compare (c^2 + spatial) - 2 I c (two passes per candidate)
            best = None
            bestk = None
            for k, (dy, dx) in enumerate(q["offs"]):
                sl = (slice(1 + dy, 1 + dy + gh), slice(1 + dx, 1 + dx + gw))
                cys = cyP[sl].reshape(gh, 1, gw, 1)
                cxs = cxP[sl].reshape(gh, 1, gw, 1)
                cis = ciP[sl].reshape(gh, 1, gw, 1)
                ys = (q["y"] - cys).square_().mul_(wS)  # (gh, h2, gw, 1)
                xs = (q["x"] - cxs).square_().mul_(wS).add_(cis * cis)  # (gh, 1, gw, h2)
                d = torch.addcmul(ys + xs, q["I"], cis, value=-2.0)
                if best is None:
                    best = d
                    bestk = torch.zeros(d.shape, dtype=torch.uint8, device=dev)
                else:
                    better = d < best
                    torch.minimum(best, d, out=best)
                    bestk.masked_fill_(better, k)
            bk = bestk.long()
            qy, qx = q["q"]
            labs.append((bk >> 1).mul_(gw).add_(bk & 1).add_(base + ((qy - 1) * gw + qx - 1)))
        if it < max_iter:
            cy, cx, ci = update(labs, cy, cx, ci)
        if callback is not None:
            callback(it, max_iter)
    out = torch.empty((gh, 2, h2, gw, 2, h2), dtype=torch.int64, device=dev)
    for lab, q in zip(labs, quads):
        out[:, q["q"][0], :, :, q["q"][1], :] = lab
    out = out.view(Hp, Wp)[:H, :W] + 1
    return out.to(torch.int32).cpu().numpy()
