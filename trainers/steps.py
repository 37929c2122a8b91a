"""One discriminator update and one generator update, as the recipe prescribes.

Shared by the trainer and ``tools/bench.py``. ``G`` and ``D`` may be accelerate-wrapped (DDP); the
generator update calls the unwrapped discriminator with its gradients off, so D gets no gradient and no
all-reduce from the generator's loss. Statistics are returned as detached tensors (no device sync).
"""

from __future__ import annotations

import math

import torch

from losses.adversarial import NEEDS_REAL_FOR_G, d_loss, g_loss, gradient_penalty, r1_penalty
from zoo.contract import composite


def learning_rate(spec, step: int, max_steps: int) -> float:
    """``spec.lr`` scaled by the schedule at ``step`` (0-based); a pure function of the step, so a resumed run
    continues the same curve. The decay ends at ``spec.schedule_steps``, or the run's ``max_steps`` when 0
    (then a resume with a larger max_steps stretches the rest of the curve)."""
    if step < spec.warmup_steps:
        return spec.lr * (step + 1) / spec.warmup_steps
    if spec.schedule == "constant":
        return spec.lr
    end = spec.schedule_steps or max_steps
    progress = min(1.0, (step - spec.warmup_steps) / max(1, end - spec.warmup_steps))
    factor = 0.5 * (1 + math.cos(math.pi * progress)) if spec.schedule == "cosine" else 1 - progress
    return spec.lr * factor


def set_learning_rate(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class GANSteps:
    def __init__(self, accelerator, G, D, opt_g, opt_d, gen_loss, recipe):
        self.accelerator, self.G, self.D = accelerator, G, D
        self.opt_g, self.opt_d, self.gen_loss = opt_g, opt_d, gen_loss
        self.recipe, self.adv = recipe, recipe.adversarial

    def generate(self, image, mask, model=None):
        """Run a generator on the masked image, with the preset's conditioning (e.g. a sketch)."""
        cond = self.recipe.condition(image, mask) if self.recipe.condition else {}
        return (model or self.G)(image * (1 - mask), mask, **cond)

    def fakes(self, image, mask, out):
        picked = [out.stages[s] for s in self.adv.stages]
        return [composite(image, p, mask) if self.adv.fake == "composite" else p for p in picked]

    def discriminator(self, image, mask, out, update_index: int) -> dict:
        adv, D = self.adv, self.D
        fakes = [f.detach() for f in self.fakes(image, mask, out)]
        do_r1 = adv.r1_gamma > 0 and update_index % adv.r1_interval == 0
        real = image.detach().requires_grad_(do_r1)
        real_logits = D(real, mask, *[real] * (len(fakes) - 1))
        fake_logits = D(fakes[0], mask, *fakes[1:])
        loss = d_loss(adv.loss, real_logits, fake_logits)
        stats = {"D/loss": loss.detach()}
        if adv.loss == "wgan_gp":
            gp = gradient_penalty(D, [image] * len(fakes), fakes, mask, hole_only=adv.gp_hole_only)
            loss = loss + adv.gp_weight * gp
            stats["D/gp"] = gp.detach()
        if do_r1:
            r1 = r1_penalty(real_logits, real)
            loss = loss + adv.r1_gamma / 2 * adv.r1_interval * r1  # lazy R1: scaled by its interval
            stats["D/r1"] = r1.detach()
        self.opt_d.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        self.opt_d.step()
        return stats

    def generator(self, image, mask, out, adversarial: bool = True) -> dict:
        """``adversarial=False``: the reconstruction terms only (the recipe's warm-up)."""
        adv = self.adv
        loss, terms = self.gen_loss(out, image, mask)
        stats = {f"G/{k}": v for k, v in terms.items()}
        if adv.weight and adversarial:
            D = self.accelerator.unwrap_model(self.D).requires_grad_(False)
            fakes = self.fakes(image, mask, out)
            fake_logits = D(fakes[0], mask, *fakes[1:])
            real_logits = None
            if adv.loss in NEEDS_REAL_FOR_G:
                with torch.no_grad():
                    real_logits = D(image, mask, *[image] * (len(fakes) - 1))
            adv_loss = g_loss(adv.loss, real_logits, fake_logits)
            D.requires_grad_(True)
            loss = loss + adv.weight * adv_loss
            stats["G/adv"] = adv_loss.detach()
        stats["G/loss"] = loss.detach()
        self.opt_g.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        self.opt_g.step()
        return stats
