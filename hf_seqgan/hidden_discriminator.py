"""The hidden-state discriminator of professor forcing.

Professor forcing (Lamb et al. 2016, https://arxiv.org/abs/1610.09038) compares two *behaviours*
of one decoder on the same source: the sequence of hidden states it goes through when it reads the
gold prefix (teacher forcing) and when it reads its own outputs (free running). The
:class:`HiddenStateDiscriminator` reads such a sequence, `(N, T, H)` per decoder layer, and returns
one logit per row: ``log p(teacher-forced) = logsigmoid(logit)``.

Architecture: the chosen decoder layers (``layers``, indices into the generator's
``decoder_hidden_states``; default the last) are concatenated and layer-normalised, projected and
read by a small bidirectional GRU (padding packed away, so a row's score does not depend on the
batch's width) or a transformer encoder with learned positions; the outputs are pooled over the
valid positions (mean and max, concatenated) and a two-layer head gives the logit. Rows must be
right-padded (``mask`` is 1 on a prefix of each row).

Examples:

```python
>>> import torch
>>> from hf_seqgan.hidden_discriminator import HiddenStateDiscriminator
>>> disc = HiddenStateDiscriminator(state_size=32, hidden_size=16, seed=0)
>>> states = torch.randn(3, 7, 32)  # (N, T, H): one decoder layer's states
>>> mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5])
>>> disc(states, mask).shape
torch.Size([3])
>>> disc.log_probs(disc(states, mask)).shape  # (N, 2): log p(free-running), log p(teacher-forced)
torch.Size([3, 2])

```
"""

from __future__ import annotations

import json
import os
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

__all__ = ["HiddenStateDiscriminator", "ENCODERS"]

ENCODERS = ("gru", "transformer")
CONFIG_NAME = "hidden_state_discriminator.json"
WEIGHTS_NAME = "model.safetensors"


class HiddenStateDiscriminator(torch.nn.Module):
    """Teacher-forced (real, class 1) vs free-running (fake, class 0) sequences of decoder states.

    Args:
        state_size (`int`): the generator's hidden size (``d_model``).
        layers (`Sequence[int]`, defaults to `(-1,)`): which entries of the generator's
            ``decoder_hidden_states`` are read (0 = the embeddings, -1 = the last layer); their
            states are concatenated.
        hidden_size (`int`, defaults to 64): width of the encoder (per direction for the GRU).
        num_layers (`int`, defaults to 1): GRU or transformer layers.
        encoder (`str`, defaults to `"gru"`): `"gru"` (bidirectional) or `"transformer"`.
        num_heads (`int`, defaults to 4): attention heads of the transformer encoder.
        dropout (`float`, defaults to 0.0): dropout between layers and in the head.
        max_length (`int`, defaults to 1024): longest sequence of the transformer's positions.
        seed (`int`, *optional*): initialise with this seed without touching the global RNG.
    """

    def __init__(
        self,
        state_size: int,
        *,
        layers: Sequence[int] = (-1,),
        hidden_size: int = 64,
        num_layers: int = 1,
        encoder: str = "gru",
        num_heads: int = 4,
        dropout: float = 0.0,
        max_length: int = 1024,
        seed: Optional[int] = None,
    ):
        super().__init__()
        layers = [int(i) for i in layers]
        for name, value in (("state_size", state_size), ("hidden_size", hidden_size), ("num_layers", num_layers), ("max_length", max_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if not layers or len(set(layers)) != len(layers):
            raise ValueError(f"layers must be a non-empty list of distinct decoder-layer indices (e.g. [-1]), got {layers}.")
        if encoder not in ENCODERS:
            raise ValueError(f"encoder={encoder!r} is not one of {list(ENCODERS)}.")
        if encoder == "transformer" and hidden_size % num_heads:
            raise ValueError(f"hidden_size={hidden_size} must be a multiple of num_heads={num_heads} for the transformer encoder.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        self.config = dict(state_size=state_size, layers=layers, hidden_size=hidden_size, num_layers=num_layers,
                           encoder=encoder, num_heads=num_heads, dropout=dropout, max_length=max_length)
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self._build()

    def _build(self) -> None:
        c = self.config
        width = c["state_size"] * len(c["layers"])
        self.norm = torch.nn.LayerNorm(width)
        if c["encoder"] == "gru":
            self.rnn = torch.nn.GRU(width, c["hidden_size"], num_layers=c["num_layers"], batch_first=True, bidirectional=True,
                                    dropout=c["dropout"] if c["num_layers"] > 1 else 0.0)
            out = 2 * c["hidden_size"]
        else:
            self.proj = torch.nn.Linear(width, c["hidden_size"])
            self.positions = torch.nn.Embedding(c["max_length"], c["hidden_size"])
            layer = torch.nn.TransformerEncoderLayer(c["hidden_size"], c["num_heads"], 4 * c["hidden_size"], dropout=c["dropout"],
                                                     batch_first=True, norm_first=True)
            self.transformer = torch.nn.TransformerEncoder(layer, c["num_layers"], enable_nested_tensor=False)
            out = c["hidden_size"]
        self.head = torch.nn.Sequential(torch.nn.Linear(2 * out, c["hidden_size"]), torch.nn.GELU(),
                                        torch.nn.Dropout(c["dropout"]), torch.nn.Linear(c["hidden_size"], 1))

    @classmethod
    def for_model(cls, model, **kwargs) -> "HiddenStateDiscriminator":
        """A discriminator sized for ``model``'s decoder (``config.d_model``); ``kwargs`` as in the class."""
        from .sampling import unwrap_model

        config = unwrap_model(model).config
        size = getattr(config, "d_model", None) or getattr(config, "hidden_size", None)
        if size is None:
            raise ValueError(f"Cannot read the hidden size of {type(unwrap_model(model)).__name__} (no config.d_model): pass state_size.")
        return cls(int(size), **kwargs)

    @property
    def layers(self) -> list[int]:
        return list(self.config["layers"])

    @property
    def state_size(self) -> int:
        return int(self.config["state_size"])

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ------------------------------------------------------------------ scoring
    def forward(self, hidden_states: Union[torch.Tensor, Sequence[torch.Tensor]], mask: torch.Tensor) -> torch.Tensor:
        """Logits `(N,)` of "teacher-forced" for hidden states `(N, T, H)` (or one such tensor per
        entry of ``layers``, concatenated here) and a right-padded ``mask`` `(N, T)`."""
        states = hidden_states if torch.is_tensor(hidden_states) else torch.cat(list(hidden_states), dim=-1)  # (N, T, L*H)
        width = self.state_size * len(self.config["layers"])
        if states.dim() != 3 or states.shape[-1] != width:
            raise ValueError(f"Expected hidden states (N, T, {width}) ({len(self.config['layers'])} layer(s) of size {self.state_size}), "
                             f"got {tuple(states.shape)}: build the discriminator for this generator (HiddenStateDiscriminator.for_model).")
        if mask.shape != states.shape[:2]:
            raise ValueError(f"mask {tuple(mask.shape)} does not match the hidden states {tuple(states.shape[:2])}.")
        mask = mask.to(states.device).bool()  # (N, T)
        lengths = mask.sum(-1)  # (N,)
        positions = torch.arange(mask.shape[1], device=mask.device)  # (T,)
        if not torch.equal(mask, positions[None, :] < lengths[:, None]):
            raise ValueError("The mask must be right-padded (1 on a prefix of each row, 0 after).")
        x = self.norm(states.to(self.norm.weight.dtype))  # (N, T, L*H)
        if self.config["encoder"] == "gru":
            packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False)
            out, _ = self.rnn(packed)
            out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (N, T, 2*hidden)
        else:
            if x.shape[1] > self.config["max_length"]:
                raise ValueError(f"Sequences of {x.shape[1]} states exceed the discriminator's max_length={self.config['max_length']}.")
            x = self.proj(x) + self.positions(positions)[None]  # (N, T, hidden)
            out = self.transformer(x, src_key_padding_mask=~mask)  # (N, T, hidden)
        valid = mask[..., None]  # (N, T, 1)
        mean = (out * valid).sum(1) / lengths.clamp_min(1)[:, None]  # (N, D)
        peak = out.masked_fill(~valid, float("-inf")).amax(1)  # (N, D)
        peak = torch.where(lengths[:, None] > 0, peak, torch.zeros_like(peak))
        return self.head(torch.cat([mean, peak], dim=-1)).squeeze(-1)  # (N,)

    @staticmethod
    def log_probs(logits: torch.Tensor) -> torch.Tensor:
        """`(N, 2)` log-probabilities of (free-running, teacher-forced) from the logits `(N,)`,
        the layout :func:`~hf_seqgan.discriminators.discriminator_loss` reads (real label 1)."""
        logits = logits.float()
        return torch.stack([F.logsigmoid(-logits), F.logsigmoid(logits)], dim=-1)

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, save_directory: str) -> None:
        """Write the settings (``hidden_state_discriminator.json``) and the weights (safetensors)."""
        from safetensors.torch import save_file

        os.makedirs(save_directory, exist_ok=True)
        with open(os.path.join(save_directory, CONFIG_NAME), "w") as f:
            json.dump(self.config, f, indent=2)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, os.path.join(save_directory, WEIGHTS_NAME))

    @classmethod
    def from_pretrained(cls, path: str, device: Union[str, torch.device, None] = None) -> "HiddenStateDiscriminator":
        """Load a discriminator written by :meth:`save_pretrained`."""
        from safetensors.torch import load_file

        config_file = os.path.join(path, CONFIG_NAME)
        if not os.path.isfile(config_file):
            raise FileNotFoundError(f"{path} holds no {CONFIG_NAME}: it was not written by HiddenStateDiscriminator.save_pretrained.")
        with open(config_file) as f:
            config = json.load(f)
        state_size = config.pop("state_size")
        model = cls(state_size, **config)
        model.load_state_dict(load_file(os.path.join(path, WEIGHTS_NAME)))
        return model.to(device) if device is not None else model
