import pytest
import torch
import torch.nn.functional as F

from zoo.layers import ContextualAttention


def official_scores(f_small, b_small, fuse, norm="clamp"):
    """Scores as the official code builds them: conv2d with normalised patches, fusion by identity convs."""
    h, w = f_small.shape[-2:]
    hb, wb = b_small.shape[-2:]
    patches = F.unfold(b_small, 3, padding=1)[0].t().reshape(hb * wb, -1, 3, 3)
    if norm == "clamp":  # official TF, nipponjo
        patches = patches / patches.flatten(1).norm(dim=1).clamp_min(1e-4).view(-1, 1, 1, 1)
    else:  # daa233: sqrt(sum(w^2 + 1e-4))
        patches = patches / torch.sqrt((patches**2 + 1e-4).sum(dim=(1, 2, 3), keepdim=True))
    y = F.conv2d(f_small, patches, padding=1)  # 1 x L x h x w
    if fuse:
        eye = torch.eye(3).view(1, 1, 3, 3)
        y = y.view(1, hb * wb, h * w).transpose(1, 2).reshape(1, 1, h * w, hb * wb)
        y = F.conv2d(y, eye, padding=1)
        y = y.view(1, h, w, hb, wb).permute(0, 2, 1, 4, 3).reshape(1, 1, h * w, hb * wb)
        y = F.conv2d(y, eye, padding=1)
        y = y.view(1, w, h, wb, hb).permute(0, 2, 1, 4, 3).reshape(h * w, hb * wb)
        return y
    return y.view(hb * wb, h * w).t()


def official_attention(f, b, m, fuse=True, scale=10.0, norm="clamp"):
    """The unchunked reference of the whole layer for one sample, written from the official steps."""
    raw = F.unfold(b, 4, padding=1, stride=2)[0]  # (C 16) x L
    f_small, b_small = F.interpolate(f, scale_factor=0.5), F.interpolate(b, scale_factor=0.5)
    m_small = F.interpolate(m, scale_factor=0.5)
    valid = F.unfold(m_small, 3, padding=1)[0].mean(0).eq(0).float()
    y = official_scores(f_small, b_small, fuse, norm) * valid
    y = torch.softmax(y * scale, dim=1) * valid
    out = F.conv_transpose2d(
        y.t().reshape(1, -1, *f_small.shape[-2:]), raw.t().reshape(-1, f.shape[1], 4, 4), stride=2, padding=1
    )
    return out / 4.0


@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("size", [(16, 16), (12, 20)])
def test_matches_official_steps(fuse, size):
    torch.manual_seed(0)
    f = torch.randn(1, 6, *size)
    m = torch.zeros(1, 1, *size)
    m[..., 2:8, 4:10] = 1
    ours, _ = ContextualAttention(fuse=fuse)(f, f, m)
    ref = official_attention(f, f, m, fuse=fuse)
    assert ours.shape == f.shape
    assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()


def test_additive_patch_norm_matches_daa233():
    torch.manual_seed(3)
    f = torch.randn(1, 4, 16, 12) * 0.05  # small features: the additive epsilon changes the scores visibly
    m = torch.zeros(1, 1, 16, 12)
    m[..., 4:10, 2:8] = 1
    ours, _ = ContextualAttention(patch_norm="additive", max_elements=40)(f, f, m)
    ref = official_attention(f, f, m, norm="additive")
    assert torch.allclose(ours, ref, atol=1e-6), (ours - ref).abs().max()
    clamp = official_attention(f, f, m, norm="clamp")
    assert not torch.allclose(ours, clamp, atol=1e-4)


def test_mask_may_come_at_the_matching_resolution():
    torch.manual_seed(4)
    f = torch.randn(2, 3, 16, 16)
    m = (torch.rand(2, 1, 16, 16) > 0.6).float()
    layer = ContextualAttention()
    a, _ = layer(f, f, m)
    b, _ = layer(f, f, F.interpolate(m, size=(8, 8)))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="mask"):
        layer(f, f, m[..., :5, :5])


def test_blocks_bound_the_score_buffers(monkeypatch):
    """No softmax sees more rows than one block; no raw score matrix more than a block and two image rows."""
    torch.manual_seed(5)
    f = torch.randn(1, 4, 48, 40)  # 24 x 20 positions, 480 background patches
    m = torch.zeros(1, 1, 48, 40)
    m[..., 10:30, 8:24] = 1
    max_elements = 480 * 30  # 30 foreground rows per block
    seen = {"softmax": 0, "matmul": 0}
    softmax, matmul = torch.softmax, torch.Tensor.__matmul__

    def spy_softmax(x, *args, **kwargs):
        seen["softmax"] = max(seen["softmax"], x.shape[0])
        return softmax(x, *args, **kwargs)

    def spy_matmul(a, b):
        out = matmul(a, b)
        if out.dim() == 2 and out.shape[1] == 480:
            seen["matmul"] = max(seen["matmul"], out.shape[0])
        return out

    monkeypatch.setattr(torch, "softmax", spy_softmax)
    monkeypatch.setattr(torch.Tensor, "__matmul__", spy_matmul)
    chunked, _ = ContextualAttention(max_elements=max_elements)(f, f, m)
    monkeypatch.undo()
    assert seen["softmax"] == 30
    assert 30 < seen["matmul"] <= 30 + 2 * 20 + 2
    whole, _ = ContextualAttention(max_elements=10**9)(f, f, m)
    assert torch.allclose(chunked, whole, atol=1e-5)


@pytest.mark.parametrize("fuse", [True, False])
def test_chunked_equals_one_block(fuse):
    torch.manual_seed(1)
    f = torch.randn(2, 5, 24, 28)
    m = (torch.rand(2, 1, 24, 28) > 0.7).float()
    whole, off_whole = ContextualAttention(fuse=fuse, max_elements=10**9)(f, f, m)
    for max_elements in (1, 170, 1000):  # one row per block, blocks that split rows oddly
        chunked, off = ContextualAttention(fuse=fuse, max_elements=max_elements)(f, f, m)
        assert torch.allclose(whole, chunked, atol=1e-5), (whole - chunked).abs().max()
        assert torch.equal(off_whole, off)


def test_best_match_never_touches_the_hole():
    torch.manual_seed(2)
    f = torch.randn(1, 4, 32, 32)
    m = torch.zeros(1, 1, 32, 32)
    m[..., 8:24, 8:24] = 1
    _, offset = ContextualAttention()(f, f, m)
    h, w = offset.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ty, tx = ys + offset[0, 0], xs + offset[0, 1]
    m_small = F.interpolate(m, scale_factor=0.5)[0, 0]
    # every chosen background patch (3x3 at half resolution) lies fully outside the hole
    for y, x in zip(ty.flatten().tolist(), tx.flatten().tolist()):
        assert 0 <= y < h and 0 <= x < w
        assert m_small[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].sum() == 0


def test_gradients_flow():
    f = torch.randn(1, 4, 16, 16, requires_grad=True)
    m = torch.zeros(1, 1, 16, 16)
    m[..., 4:10, 4:10] = 1
    out, _ = ContextualAttention(max_elements=50)(f, f, m)
    out.sum().backward()
    assert f.grad is not None and f.grad.abs().sum() > 0
