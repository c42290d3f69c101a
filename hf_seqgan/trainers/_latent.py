"""The latent adversary of :class:`~hf_seqgan.trainers.CycleTrainer` (Lample et al. 2018,
https://arxiv.org/abs/1711.00043, section 2.4): a discriminator on the *encoder's* states tries to
tell which domain a sentence came from, and the encoders are trained to make it fail, so that both
domains are mapped to one shared space the decoders read from ("projection to a common space",
next to the direct transformation of the other terms).

X is read by G's encoder (the direction into Y) and Y by R's (into X; one model when
``shared_model``); the discriminator is a :class:`~hf_seqgan.hidden_discriminator.HiddenStateDiscriminator`
on the last encoder layer, class 1 = "from Y". The encoders' loss flips the labels (the
discriminator's snapshot is used, so its own update in the same step cannot break the backward);
the discriminator then learns on the detached states through its prepared (DDP) copy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..sampling import frozen_call, frozen_parameters, unwrap_model

__all__ = ["encoder_states", "latent_terms"]


def encoder_states(direction, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(B, S, H)` last-layer encoder states of ``direction`` on ``ids`` (its source tag included) and their mask."""
    ids, mask = direction.encoder_input(ids, mask)
    states = unwrap_model(direction.model).get_encoder()(input_ids=ids, attention_mask=mask, return_dict=True).last_hidden_state
    return states, mask


def _pad(states: torch.Tensor, mask: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    return F.pad(states, (0, 0, 0, width - states.shape[1])), F.pad(mask, (0, width - mask.shape[1]))


def latent_terms(trainer, x, x_mask, y, y_mask) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoders' adversarial losses ``(G's on X, R's on Y)`` against the current latent
    discriminator, then its update on the same (detached) states."""
    h_x, m_x = encoder_states(trainer.to_y, x, x_mask)  # (B, S, H): X through G's encoder
    h_y, m_y = encoder_states(trainer.to_x, y, y_mask)  # (B', S', H): Y through R's encoder
    aux = trainer.auxiliary("latent_discriminator")
    params = frozen_parameters(aux.unwrapped)
    fool_x = F.softplus(-frozen_call(aux.unwrapped, h_x, m_x, params=params)).mean()  # -log D(X states look like Y)
    fool_y = F.softplus(frozen_call(aux.unwrapped, h_y, m_y, params=params)).mean()  # -log(1 - D(Y states)): look like X
    width = max(h_x.shape[1], h_y.shape[1])
    (sx, mx), (sy, my) = _pad(h_x.detach(), m_x, width), _pad(h_y.detach(), m_y, width)
    aux.model.train()
    logits = aux.model(torch.cat([sx, sy]), torch.cat([mx, my]))  # (B + B',)
    labels = torch.cat([torch.zeros(h_x.shape[0]), torch.ones(h_y.shape[0])]).to(logits.device)
    loss = F.binary_cross_entropy_with_logits(logits, labels)
    trainer.auxiliary_step("latent_discriminator", loss)
    accuracy = ((logits > 0).float() == labels).float().mean()
    trainer.record(latent_d_loss=loss.detach(), latent_d_acc=accuracy, latent_adversarial_x_loss=fool_x.detach(),
                   latent_adversarial_y_loss=fool_y.detach())
    return fool_x, fool_y
