"""Adversarial losses and discriminator penalties.

Logits may be one tensor or a tuple of tensors (one per discriminator head); losses add up the heads.
``d_loss(kind, real, fake)`` is minimised by the discriminator, ``g_loss(kind, real, fake)`` by the
generator (``real`` is only used by the relativistic loss).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zoo.errors import lookup_name


def _heads(logits):
    return logits if isinstance(logits, (tuple, list)) else (logits,)


def _per_head(fn, real, fake):
    fakes = _heads(fake)
    reals = _heads(real) if real is not None else (None,) * len(fakes)
    return sum(fn(r, f) for r, f in zip(reals, fakes))


def _d_hinge(real, fake):  # DeepFill v2 / neuralgym: halves of the two hinge terms
    return 0.5 * F.relu(1 - real).mean() + 0.5 * F.relu(1 + fake).mean()


def _d_wgan(real, fake):
    return fake.mean() - real.mean()


def _d_rals(real, fake):
    return 0.5 * (((real - fake.mean() - 1) ** 2).mean() + ((fake - real.mean() + 1) ** 2).mean())


def _d_lsgan(real, fake):  # on the discriminator's own output (HINT's has a sigmoid)
    return 0.5 * (((real - 1) ** 2).mean() + (fake**2).mean())


def _d_nonsaturating(real, fake):
    return F.softplus(fake).mean() + F.softplus(-real).mean()


def _g_hinge(real, fake):
    return -fake.mean()


def _g_rals(real, fake):
    return 0.5 * (((fake - real.mean() - 1) ** 2).mean() + ((real - fake.mean() + 1) ** 2).mean())


def _g_lsgan(real, fake):
    return ((fake - 1) ** 2).mean()


def _g_nonsaturating(real, fake):
    return F.softplus(-fake).mean()


D_LOSSES = {"hinge": _d_hinge, "wgan_gp": _d_wgan, "rals": _d_rals, "lsgan": _d_lsgan,
            "nonsaturating": _d_nonsaturating}
G_LOSSES = {"hinge": _g_hinge, "wgan_gp": _g_hinge, "rals": _g_rals, "lsgan": _g_lsgan,
            "nonsaturating": _g_nonsaturating}
NEEDS_REAL_FOR_G = {"rals"}


def d_loss(kind: str, real_logits, fake_logits) -> torch.Tensor:
    return _per_head(lookup_name(D_LOSSES, "adversarial loss", kind), real_logits, fake_logits)


def g_loss(kind: str, real_logits, fake_logits) -> torch.Tensor:
    return _per_head(lookup_name(G_LOSSES, "adversarial loss", kind), real_logits, fake_logits)


def gradient_penalty(discriminator, reals, fakes, mask, hole_only: bool = False):
    """WGAN-GP: (||grad D(x_hat)|| - 1)^2 at random interpolates of real and fake, each head separately.

    ``reals`` / ``fakes`` are lists with one image per discriminator input. ``hole_only`` measures the
    gradient norm over hole pixels only (DeepFill v1's masked penalty).
    """
    alpha = torch.rand(reals[0].shape[0], 1, 1, 1, device=reals[0].device, dtype=reals[0].dtype)
    mixed = [(alpha * r + (1 - alpha) * f.detach()).requires_grad_(True) for r, f in zip(reals, fakes)]
    logits = discriminator(mixed[0], mask, *mixed[1:])
    penalty = 0
    for head in _heads(logits):
        grads = torch.autograd.grad(head.sum(), mixed, create_graph=True, allow_unused=True)
        grads = [g * mask if hole_only else g for g in grads if g is not None]
        norm = torch.cat([g.flatten(1) for g in grads], dim=1).norm(dim=1)
        penalty = penalty + ((norm - 1) ** 2).mean()
    return penalty


def r1_penalty(real_logits, real_input):
    """R1: squared gradient norm of each head at real samples (``real_input`` must require grad)."""
    total = 0
    for head in _heads(real_logits):
        (grad,) = torch.autograd.grad(head.sum(), real_input, create_graph=True)
        total = total + grad.square().flatten(1).sum(1).mean()
    return total
