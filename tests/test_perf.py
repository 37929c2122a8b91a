"""Speed and memory options give the same numbers: activation checkpointing (same gradients), fused attention
(same outputs as the explicit softmax), training-only model kwargs reaching the run's generator."""

import os

import pytest
import torch

import zoo
from tests.helpers import random_batch
from trainers.config import resolve_config
from zoo.mat import TINY as MAT_TINY
from zoo.mat import WindowAttention, shifted_window_bias
from zoo.mhtma import MultiHeadTemperatureMaskedAttention

HINT_TINY = dict(dim=8, num_blocks=(1, 2, 1, 1), heads=(1, 2, 4, 8))


def gradients(model, **call_kwargs):
    image, mask = random_batch()
    model.zero_grad(set_to_none=True)
    out = model(image * (1 - mask), mask, **call_kwargs)
    sum((stage * torch.linspace(-1, 1, stage.numel()).view_as(stage)).sum() for stage in out.stages).backward()
    return [stage.detach() for stage in out.stages], {n: p.grad.clone() for n, p in model.named_parameters()
                                                      if p.grad is not None}


@pytest.mark.parametrize("name, kwargs, call_kwargs", [
    ("hint", HINT_TINY, {}),
    ("mat", MAT_TINY, dict(seed=3)),  # training mode draws z, noise and keep-maps: from one seed
])
def test_activation_checkpointing_gives_the_same_gradients(name, kwargs, call_kwargs):
    torch.manual_seed(0)
    plain = zoo.create_model(name, **kwargs).train()
    checkpointed = zoo.create_model(name, **kwargs, grad_checkpointing=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    out_a, grads_a = gradients(plain, **call_kwargs)
    out_b, grads_b = gradients(checkpointed, **call_kwargs)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) == len(list(plain.parameters()))
    for a, b in zip(out_a, out_b):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)
    worst = max((grads_a[k] - grads_b[k]).abs().max() for k in grads_a)
    assert worst <= 1e-6, worst
    assert max(g.abs().max() for g in grads_a.values()) > 1e-3  # gradients are not trivially zero


def test_checkpointing_is_active_only_when_recording_gradients():
    """The option changes what the backward pass recomputes, not the module tree or inference."""
    model = zoo.create_model("hint", **HINT_TINY, grad_checkpointing=True).eval()
    plain = zoo.create_model("hint", **HINT_TINY)
    assert model.state_dict().keys() == plain.state_dict().keys()
    recomputed = []
    block = model.encoder_level1[0]
    block.ffn1.register_forward_pre_hook(lambda *_: recomputed.append(torch.is_grad_enabled()))
    image, mask = random_batch()
    with torch.no_grad():
        model(image * (1 - mask), mask)
    assert recomputed == [False]  # one ordinary forward
    recomputed.clear()
    model(image * (1 - mask), mask).final.sum().backward()
    assert recomputed == [True]  # eval mode (inference, export) never checkpoints, even with gradients
    recomputed.clear()
    model.train()
    model(image * (1 - mask), mask).final.sum().backward()
    assert len(recomputed) == 2  # the forward, and its recomputation during backward


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 2e-6), (torch.float64, 1e-12)])
@pytest.mark.parametrize("shifted", [False, True])
def test_mat_window_attention_fused_equals_explicit_softmax(dtype, tol, shifted):
    torch.manual_seed(0)
    attention = WindowAttention(24, 3).to(dtype)
    x = torch.randn(8, 64, 24, dtype=dtype)  # 2 images x 4 windows of 8 x 8 tokens
    valid = (torch.rand(8, 64, 1) < 0.4).to(dtype)
    valid[0] = 0  # a window without valid tokens
    bias = shifted_window_bias((16, 16), 8, 4).to(dtype) if shifted else None
    fused, valid_fused = attention(x, valid, bias)
    explicit, valid_explicit, maps = attention(x, valid, bias, return_attention=True)
    assert (fused - explicit).abs().max() <= tol
    assert torch.equal(valid_fused, valid_explicit)
    assert torch.allclose(maps.sum(-1), torch.ones((), dtype=dtype))
    fused_nomask, _ = attention(x)
    explicit_nomask, _, _ = attention(x, return_attention=True)
    assert (fused_nomask - explicit_nomask).abs().max() <= tol


def test_mat_transformer_stage_in_float64_is_unchanged_by_the_fused_attention(monkeypatch):
    """MAT's whole transformer U-Net (tiny), fused attention vs explicit maps, in float64 to see past rounding
    (the mapping network computes in float32 by design, so the stage is called with its style vectors)."""
    torch.manual_seed(0)
    stage = zoo.create_model("mat", **MAT_TINY).synthesis.first_stage.double().eval()
    image, mask = (t.double() for t in random_batch())
    known = 1 - mask
    ws = torch.randn(2, 4, MAT_TINY["w_dim"], dtype=torch.float64)
    keep_map = {}

    def keep(shape):
        return keep_map.setdefault(tuple(shape), (torch.rand(shape) < 0.5).double())

    with torch.no_grad():
        fused = stage(image * known, known, ws, keep)
        original = WindowAttention.forward
        monkeypatch.setattr(WindowAttention, "forward",
                            lambda self, x, valid=None, shift_bias=None: original(self, x, valid, shift_bias, True)[:2])
        explicit = stage(image * known, known, ws, keep)
    assert fused.abs().max() > 0.01
    assert (fused - explicit).abs().max() < 1e-10


def mhtma_reference(m, x, mask, tau):
    """MHTMA one head at a time, with the explicit weight matrix (the paper's equations step by step)."""
    h, w = x.shape[-2:]
    key_missing = m.key_missing(mask, (h, w))
    heads = []
    for i, embed in enumerate(m.embeddings):
        queries, keys, values = m.patches(embed(x))
        heads.append(m.fold(m.attention_weights(queries, keys, key_missing, tau[:, i]) @ values, (h, w)))
    return torch.cat(heads, dim=1)


@pytest.mark.parametrize("max_elements", [2**25, 500])
def test_mhtma_fused_heads_equal_the_per_head_softmax(max_elements):
    torch.manual_seed(0)
    m = MultiHeadTemperatureMaskedAttention(8, 2, temperature_width=8, max_elements=max_elements)
    x = torch.randn(3, 8, 12, 15)
    mask = torch.zeros(3, 1, 12, 15)
    mask[0, :, 2:6, 3:9] = 1
    mask[1] = 1  # no valid key at all: zeros
    tau = torch.tensor([[0.05, 2.0], [0.3, 0.01], [1.0, 1e-3]])
    fused, _ = m(x, mask, temperatures=tau)
    assert (fused - mhtma_reference(m, x, mask, tau)).abs().max() <= 1e-5
    assert fused[1].abs().max() == 0 and fused[0].abs().min() > 0
    out, learned_tau = m(x, mask)  # learned temperatures: gradients stay finite with an all-hole sample
    assert (out - mhtma_reference(m, x, mask, learned_tau)).abs().max() <= 1e-5
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def test_training_only_model_kwargs_reach_the_run_but_not_inference():
    cfg = resolve_config("hint")
    assert cfg["model_kwargs"]["grad_checkpointing"] is True
    assert zoo.get_preset("hint").recipe.train_model_kwargs == {"grad_checkpointing": True}
    off = resolve_config("hint", sets=["model_kwargs.grad_checkpointing=false"])
    assert off["model_kwargs"]["grad_checkpointing"] is False
    assert "grad_checkpointing" not in zoo.get_preset("hint").defaults  # zoo.load / inference build without it
    assert "grad_checkpointing" not in resolve_config("deepfill_v2")["model_kwargs"]


def test_hole_windows_on_the_device_equal_the_bounding_box_loop():
    """The global-local critic's local windows, found without reading the mask back, against a plain loop."""
    from discriminators.global_local import crop_windows, hole_windows

    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(6, 1, 40, 56)
    mask[0, :, 3:9, 50:56] = 1  # at the right border: the window is clamped
    mask[1, :, 0:2, 0:3] = 1  # top-left corner
    mask[1, :, 30:35, 20:22] = 1  # two holes: the box spans both
    mask[2, :, 10:30, 5:40] = 1  # larger than the window
    # mask[3] has no hole: the window is centred
    mask[4:] = (torch.rand(2, 1, 40, 56, generator=g) < 0.01).float()
    image = torch.randn(6, 3, 40, 56, generator=g)
    for size in (8, 16, 40):
        corners = hole_windows(mask, size)
        for i in range(6):
            ys, xs = torch.nonzero(mask[i, 0] > 0.5, as_tuple=True)
            cy, cx = ((int(ys.min()) + int(ys.max()) + 1) // 2, (int(xs.min()) + int(xs.max()) + 1) // 2) \
                if len(ys) else (20, 28)
            y, x = min(max(cy - size // 2, 0), 40 - size), min(max(cx - size // 2, 0), 56 - size)
            assert corners[i].tolist() == [y, x], (size, i)
            assert torch.equal(crop_windows(image, corners, size)[i], image[i, :, y : y + size, x : x + size])


@pytest.mark.skipif(not os.environ.get("ZOO_COMPILE_TESTS"), reason="compiles three runs (minutes on a CPU); "
                    "set ZOO_COMPILE_TESTS=1 (or a torch.compile backend name, e.g. aot_eager) to run it")
def test_resume_with_compile_continues_exactly(tmp_path):
    from tests.test_trainer import tiny_config
    from trainers.checkpoint import read_checkpoint
    from trainers.trainer import train

    backend = os.environ["ZOO_COMPILE_TESTS"]
    backend = True if backend == "1" else backend
    try:
        straight = train({**tiny_config(tmp_path / "straight"), "compile": backend})
        half = train({**tiny_config(tmp_path / "half", max_steps=2), "compile": backend})
        resumed = train(resume=str(half), max_steps=4)
    finally:
        torch.use_deterministic_algorithms(False)
    a, b = read_checkpoint(straight), read_checkpoint(resumed)
    assert b["config"]["compile"] == backend
    for key in ("G", "D", "G_ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name}"


def compile_backend():
    """aot_eager (traces the graph as inductor would see it, compiles nothing) unless ZOO_COMPILE_TESTS names one."""
    backend = os.environ.get("ZOO_COMPILE_TESTS") or "aot_eager"
    return "inductor" if backend == "1" else backend


@pytest.mark.parametrize("training", [False, True])
def test_compiled_deepfill_v2_equals_eager(training):
    """Under torch.compile the up-sampling convolutions take the transposed-convolution path and contextual
    attention runs eagerly (inductor's kernels for both were many times slower); the numbers stay the same."""
    torch.manual_seed(6)
    model = zoo.create_model("deepfill_v2", cnum=8).train(training)
    model.attention_flow = False
    image, mask = random_batch()
    with torch.set_grad_enabled(training):
        eager = model(image * (1 - mask), mask).stages
        torch._dynamo.reset()
        compiled = torch.compile(model, backend=compile_backend())(image * (1 - mask), mask).stages
    for a, b in zip(eager, compiled):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0)
    if training:
        grads = torch.autograd.grad(sum(s.square().mean() for s in compiled), list(model.parameters()))
        expected = torch.autograd.grad(sum(s.square().mean() for s in eager), list(model.parameters()))
        for g, e in zip(grads, expected):  # inductor's fused kernels round differently: 2e-5 of the scale seen
            torch.testing.assert_close(g, e, atol=1e-4 * e.abs().max().item() + 1e-9, rtol=0)


# ---------------------------------------------------------------------------------------------------------
# DeepFill's faster layers against the plain computations they replace


@pytest.mark.parametrize("tf_mode", [False, True])
@pytest.mark.parametrize("out_channels, activation", [(6, torch.nn.ELU()), (3, None), (4, torch.nn.ReLU())])
def test_upsampling_conv_fast_paths_equal_upsample_then_conv(tf_mode, out_channels, activation):
    from zoo.layers import UpConv2d

    torch.manual_seed(0)
    layer = UpConv2d(5, out_channels, align_corners=tf_mode, activation=activation, tf_padding=tf_mode)
    x = torch.randn(2, 5, 7, 10, requires_grad=True)
    results = []
    for phase_conv in (True, False):
        layer.phase_conv = phase_conv
        layer.zero_grad(set_to_none=True)
        x.grad = None
        out = layer(x)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out.detach(), x.grad.clone(), layer.conv.conv.weight.grad.clone()))
    (fast, fast_dx, fast_dw), (plain, plain_dx, plain_dw) = results
    assert fast.shape == (2, out_channels, 14, 20)
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=0)
    layer.phase_conv = True
    with torch.no_grad():  # inference takes the other fast path: the four phases of one 2x2 convolution
        phases = layer(x)
    torch.testing.assert_close(phases, plain, atol=1e-5, rtol=0)
    assert plain.abs().amax() > 0.1  # a real signal, not a match of two near-zero outputs
    torch.testing.assert_close(fast_dx, plain_dx, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast_dw, plain_dw, atol=1e-4, rtol=1e-5)  # sums over 280 pixels


def test_tf_x2_nearest_upsampling_picks_the_pixels_of_interpolate():
    from zoo.layers import resize_nearest_aligned

    for n in range(1, 70):
        x = torch.arange(n * 3.0).view(1, 1, n, 3)
        assert torch.equal(resize_nearest_aligned(x, 2 * n, 6),
                           torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")), n


@pytest.mark.parametrize("dilation", [1, 2, 4, 16])
def test_tf_same_padding_by_the_conv_equals_padding_by_hand(dilation):
    import torch.nn.functional as F

    from zoo.layers import GatedConv2d, tf_same_padding

    torch.manual_seed(dilation)
    layer = GatedConv2d(4, 6, 3, dilation=dilation, activation=torch.nn.ELU(), tf_padding=True)
    assert not layer.pad_by_hand  # stride 1: SAME padding is symmetric
    x = torch.randn(1, 4, 20, 13)
    top, bottom = tf_same_padding(20, 3, 1, dilation)
    left, right = tf_same_padding(13, 3, 1, dilation)
    by_hand = F.conv2d(F.pad(x, (left, right, top, bottom)), layer.conv.weight, layer.conv.bias, dilation=dilation)
    torch.testing.assert_close(layer(x), layer.activate(by_hand), atol=1e-5, rtol=0)


def test_gated_conv_inference_in_place_equals_the_autograd_path():
    from zoo.layers import GatedConv2d

    torch.manual_seed(1)
    for activation in (torch.nn.ELU(), torch.nn.ReLU()):
        layer = GatedConv2d(3, 4, 3, activation=activation)
        x = torch.randn(2, 3, 9, 9)
        with torch.no_grad():
            inference = layer(x)
        assert torch.equal(inference, layer(x).detach())


def test_whole_score_matrix_fusion_equals_the_official_convolutions():
    from zoo.layers.contextual_attention import fuse_scores_dense, fuse_scores_full

    torch.manual_seed(2)
    h, w = 5, 7
    scores = torch.randn(h * w, h * w, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(h * w, h * w, dtype=torch.float64)
    grads = []
    for fuse in (lambda s: fuse_scores_full(s, h, w), lambda s: fuse_scores_dense(s[None], h, w)[0]):
        scores.grad = None
        out = fuse(scores)
        (out * weights).sum().backward()
        grads.append((out.detach(), scores.grad.clone()))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])
    with torch.no_grad():  # the in-place variant
        torch.testing.assert_close(fuse_scores_full(scores, h, w), grads[1][0])


def test_negligible_softmax_weights_become_zeros_not_subnormals():
    from zoo.layers.contextual_attention import drop_negligible_

    torch.manual_seed(3)
    logits = torch.randn(64, 500) * 40  # as sharp as softmax scale 10 makes DeepFill's scores
    plain = torch.softmax(logits, dim=1)
    assert ((plain > 0) & (plain < torch.finfo(torch.float32).tiny)).any()  # the slow case exists
    dropped = torch.softmax(drop_negligible_(logits.clone()), dim=1)
    assert not ((dropped > 0) & (dropped < torch.finfo(torch.float32).tiny)).any()
    torch.testing.assert_close(dropped, plain, atol=1e-20, rtol=1e-6)  # only the negligible weights changed
    assert (plain[dropped == 0] < 1e-25).all()


def test_contextual_attention_with_sharp_scores_still_matches_the_official_steps():
    from tests.test_contextual_attention import official_attention
    from zoo.layers import ContextualAttention

    torch.manual_seed(4)
    f = torch.randn(1, 8, 16, 16) * 6  # large features: most softmax weights underflow
    m = torch.zeros(1, 1, 16, 16)
    m[..., 3:9, 5:12] = 1
    ours, _ = ContextualAttention()(f, f, m)
    torch.testing.assert_close(ours, official_attention(f, f, m), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["deepfill_v1", "deepfill_v2"])
def test_deepfill_fast_paths_give_the_plain_outputs_and_gradients(name):
    torch.manual_seed(5)
    model = zoo.create_model(name, cnum=8).train()
    fast_out, fast_grads = gradients(model)
    for module in model.modules():
        if hasattr(module, "phase_conv"):
            module.phase_conv = False
    plain_out, plain_grads = gradients(model)
    for a, b in zip(fast_out, plain_out):  # float rounding through ~30 layers: 1.2e-5 seen on an AMD EPYC
        torch.testing.assert_close(a, b, atol=5e-5, rtol=0)
    for key in plain_grads:  # float rounding, amplified through ~30 layers: relative to each gradient's scale
        scale = plain_grads[key].abs().max().item()
        torch.testing.assert_close(fast_grads[key], plain_grads[key], atol=1e-4 * scale, rtol=0)


def test_deepfill_attention_offsets_only_in_eval_mode_and_when_asked():
    image, mask = random_batch()
    model = zoo.create_model("deepfill_v2", cnum=8)
    assert "attention" not in model.train()(image * (1 - mask), mask).aux
    with torch.no_grad():
        assert model.eval()(image * (1 - mask), mask).aux["attention"].shape == image.shape
        model.attention_flow = False
        assert model(image * (1 - mask), mask).aux == {}


def test_dropping_negligible_attention_weights_keeps_outputs_and_gradients(monkeypatch):
    from zoo.layers import ContextualAttention
    from zoo.layers import contextual_attention as ca

    torch.manual_seed(6)
    f = torch.randn(1, 6, 16, 20) * 5
    m = torch.zeros(1, 1, 16, 20)
    m[..., 4:10, 6:14] = 1
    results = []
    for cutoff in (ca.NEGLIGIBLE_LOGIT, float("inf")):  # inf: nothing dropped, the plain softmax
        monkeypatch.setattr(ca, "NEGLIGIBLE_LOGIT", cutoff)
        x = f.clone().requires_grad_()
        out, offsets = ContextualAttention()(x, x, m)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out.detach(), offsets, x.grad))
    (out, offsets, grad), (plain_out, plain_offsets, plain_grad) = results
    torch.testing.assert_close(out, plain_out, atol=1e-6, rtol=0)
    assert torch.equal(offsets, plain_offsets)
    torch.testing.assert_close(grad, plain_grad, atol=1e-5, rtol=1e-5)


def test_plain_conv_elu_gradient_is_zero_not_subnormal_where_it_saturates():
    from zoo.layers import GatedConv2d

    torch.manual_seed(7)
    layer = GatedConv2d(3, 4, 3, activation=torch.nn.ELU(), gated=False)
    with torch.no_grad():
        layer.conv.bias.copy_(torch.tensor([-95.0, -3.0, 0.0, 2.0]))  # the first channel saturates
    x = torch.randn(1, 3, 8, 8, requires_grad=True)
    layer(x).sum().backward()
    ours = layer.conv.bias.grad.clone()
    pre = layer.conv(x.detach()).detach().requires_grad_()
    torch.nn.functional.elu(pre).sum().backward()  # out of place: slope exp(x) from the input
    plain = pre.grad.sum((0, 2, 3))
    assert ours[0] == 0 and 0 < plain[0] < torch.finfo(torch.float32).tiny * 64  # subnormal slopes, summed
    torch.testing.assert_close(ours[1:], plain[1:], atol=1e-5, rtol=1e-6)
