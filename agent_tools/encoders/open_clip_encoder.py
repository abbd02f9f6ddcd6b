"""open_clip image-text encoder: batched, L2-normalised embeddings on the best device.

- :class:`OpenClipEncoder` - ``encode_images``, ``encode_text``, ``encode_text_with_soft_tokens``;
  ``dim``, ``name``, ``trained``, ``cache_key``, ``image_size``.
- :func:`resolve_device` - ``"auto"`` → ``cuda`` when present, else ``cpu``; fp16 on CUDA, fp32 on CPU.

Images are preprocessed as tensors (resize shortest side → centre crop → normalise with the
model's mean/std), so a batch of decoded frames never goes through PIL.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
import json
import logging
from typing import Optional, Sequence, Union

import numpy as np

import agent_tools._tvshim  # noqa: F401  (must precede open_clip / torchvision)
import torch
import torch.nn.functional as F

from ..errors import EncoderUnavailableError, InvalidArgumentError
from .registry import EncoderSpec

__all__ = ["OpenClipEncoder", "resolve_device"]

log = logging.getLogger(__name__)

ImageInput = Union[np.ndarray, Sequence["object"]]


def resolve_device(device: str = "auto") -> tuple[torch.device, torch.dtype]:
    """Pick the device and dtype: fp16 on CUDA, fp32 on CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidArgumentError(f"invalid device {device!r}; valid: 'auto', 'cpu', 'cuda', 'cuda:N'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidArgumentError(f"device {device!r} asked for but CUDA is not available here; use 'cpu' or 'auto'")
    return dev, (torch.float16 if dev.type == "cuda" else torch.float32)


def _local_weights_stamp(spec: EncoderSpec) -> str:
    """Size and mtime of local checkpoint files, so retrained weights never reuse stale cached embeddings."""
    import os

    stamp = []
    for ref in (spec.pretrained, spec.model):
        if ref and not str(ref).startswith("hf-hub:"):
            path = Path(str(ref).removeprefix("local-dir:"))
            files = sorted(path.rglob("*")) if path.is_dir() else [path]
            for f in files:
                try:
                    st = os.stat(f)
                except OSError:
                    continue
                if f.is_file():
                    stamp.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return (";local=" + ",".join(stamp)) if stamp else ""


def _how_to_get(spec: EncoderSpec) -> str:
    if spec.missing_hint:
        return (
            f"Weights for encoder {spec.name!r} are not on this machine: {spec.missing_hint}. To try videoseek "
            "without weights select the explicitly untrained encoder: add `--encoder tiny-untrained` to the "
            "command, or set VIDEOSEEK_ENCODER=tiny-untrained."
        )
    return (
        f"Weights for encoder {spec.name!r} (open_clip {spec.model!r}, pretrained={spec.pretrained!r}) "
        "are not available on this machine. On a machine with internet access run\n"
        f"    python -c \"import open_clip; open_clip.create_model_and_transforms('{spec.model}', "
        f"pretrained='{spec.pretrained}'); open_clip.get_tokenizer('{spec.model}')\"\n"
        "then copy ~/.cache/huggingface (and ~/.cache/clip) here, or point 'pretrained' at a local "
        "checkpoint file in a JSON config (VIDEOSEEK_ENCODER_CONFIGS). To try videoseek without weights "
        "select the explicitly untrained encoder (random weights: image queries work, text scores carry "
        "no meaning): add `--encoder tiny-untrained` to the command, or set VIDEOSEEK_ENCODER=tiny-untrained."
    )


def _hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face hub answers (fails fast offline instead of retrying for a minute)."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # behind a proxy a direct probe proves nothing: let the hub client try
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


class _TextTower:
    """Uniform view of the text tower of ``CLIP`` and ``CustomTextCLIP`` models."""

    def __init__(self, model):
        text = getattr(model, "text", None)
        if text is not None:  # CustomTextCLIP: an open_clip TextTransformer
            if not hasattr(text, "token_embedding"):
                raise InvalidArgumentError("soft tokens need an open_clip TextTransformer text tower (HF towers unsupported)")
            if getattr(text, "cls_emb", None) is not None:
                raise InvalidArgumentError("soft tokens are not supported for text towers with a class token (CoCa)")
            self.token_embedding = text.token_embedding
            self.positional_embedding = text.positional_embedding
            self.transformer = text.transformer
            self.attn_mask = text.attn_mask
            self.ln_final = text.ln_final
            self.projection = text.text_projection
            self.pool_type = text.pool_type
            self.eos_id = getattr(text, "eos_id", None)
            self.pad_id = getattr(text, "pad_id", 0)
            self.use_pad_mask = bool(getattr(text, "use_pad_mask", False))
            self.heads = text.heads
        else:  # CLIP
            self.token_embedding = model.token_embedding
            self.positional_embedding = model.positional_embedding
            self.transformer = model.transformer
            self.attn_mask = model.attn_mask
            self.ln_final = model.ln_final
            self.projection = model.text_projection
            self.pool_type = model.text_pool_type
            self.eos_id = getattr(model, "text_eos_id", None)
            self.pad_id = 0
            self.use_pad_mask = False
            self.heads = None
        self.width = self.token_embedding.weight.shape[1]

    def pool_positions(self, ids: torch.Tensor) -> torch.Tensor:
        b, length = ids.shape
        if self.pool_type == "argmax":
            return ids.argmax(dim=-1)
        if self.pool_type == "eos":
            return (ids == self.eos_id).int().argmax(dim=-1)
        if self.pool_type == "last":
            return torch.full((b,), length - 1, dtype=torch.long, device=ids.device)
        raise InvalidArgumentError(f"soft tokens need pooling 'argmax', 'eos' or 'last', not {self.pool_type!r}")


class OpenClipEncoder:
    """An open_clip model wrapped for frame/text embedding.

    Args:
        spec: The registry entry.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Raises:
        EncoderUnavailableError: The weights (or tokenizer) cannot be loaded here.
    """

    def __init__(self, spec: EncoderSpec, device: str = "auto"):
        import open_clip

        self.spec = spec
        self.name = spec.name
        self.trained = spec.trained
        self.device, self.dtype = resolve_device(device)
        if spec.model_cfg is not None:
            cfg = dict(spec.model_cfg)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(spec.seed)
                model = open_clip.model.CustomTextCLIP(**cfg)
            model.visual.preprocess_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
            ctx = cfg["text_cfg"]["context_length"]
            if spec.tokenizer not in (None, "clip-bpe"):
                self.tokenizer = open_clip.tokenizer.HFTokenizer(spec.tokenizer, context_length=ctx)
            else:
                self.tokenizer = open_clip.SimpleTokenizer(context_length=ctx)
            weights_id = f"seed={spec.seed};cfg={json.dumps(cfg, sort_keys=True)}"
            log.warning("encoder %r is UNTRAINED (random weights): its scores carry no meaning", spec.name)
        else:
            from .registry import weights_status

            available, _ = weights_status(spec)
            if not available and not _hub_reachable():
                raise EncoderUnavailableError(_how_to_get(spec) + "\n(cause: not in the local caches and the model hub is unreachable)")
            try:
                model = open_clip.create_model(spec.model, pretrained=spec.pretrained, device="cpu")
                if spec.tokenizer == "clip-bpe":
                    self.tokenizer = open_clip.SimpleTokenizer(context_length=model.context_length)
                elif spec.tokenizer:
                    self.tokenizer = open_clip.tokenizer.HFTokenizer(spec.tokenizer, context_length=model.context_length)
                else:
                    self.tokenizer = open_clip.get_tokenizer(spec.model)
            except EncoderUnavailableError:
                raise
            except Exception as exc:  # download failures surface as OSError/RuntimeError/HF errors
                raise EncoderUnavailableError(_how_to_get(spec) + f"\n(cause: {type(exc).__name__}: {exc})") from exc
            weights_id = f"{spec.model};{spec.pretrained}" + _local_weights_stamp(spec)
        model.eval().requires_grad_(False)
        self.model = model.to(self.device, dtype=self.dtype)
        pcfg = getattr(model.visual, "preprocess_cfg", {}) or {}
        size = getattr(model.visual, "image_size", 224)
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self._mean = torch.tensor(pcfg.get("mean", (0.48145466, 0.4578275, 0.40821073)), device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(pcfg.get("std", (0.26862954, 0.26130258, 0.27577711)), device=self.device).view(1, 3, 1, 1)
        with torch.no_grad():
            probe = self.model.encode_image(torch.zeros(1, 3, self.image_size, self.image_size, device=self.device, dtype=self.dtype))
        self.dim = int(probe.shape[-1])
        self._text_tower: Optional[_TextTower] = None
        digest = hashlib.sha1(f"{spec.name}|{weights_id}|{self.image_size}".encode()).hexdigest()[:12]
        self.cache_key = f"{spec.name}-{digest}"

    def __repr__(self) -> str:
        return f"OpenClipEncoder({self.name!r}, dim={self.dim}, device={self.device}, trained={self.trained})"

    # -- images -------------------------------------------------------------------
    def _to_tensor(self, images: ImageInput) -> torch.Tensor:
        if isinstance(images, np.ndarray):
            if images.ndim == 3:
                images = images[None]
            if images.ndim != 4 or images.shape[-1] != 3:
                raise InvalidArgumentError(f"images must be N x H x W x 3 uint8 RGB arrays, got shape {images.shape}")
            if not images.flags.writeable:
                images = images.copy()
            return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        arrays = []
        for im in images:
            if isinstance(im, np.ndarray):
                arrays.append(im)
            elif hasattr(im, "convert"):
                arrays.append(np.array(im.convert("RGB")))  # a writable copy (torch.from_numpy needs one)
            else:
                raise InvalidArgumentError(f"unsupported image type {type(im).__name__}; pass PIL images or uint8 arrays")
        sizes = {a.shape for a in arrays}
        if len(sizes) == 1:
            return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        return torch.cat([self.preprocess(torch.from_numpy(a).permute(2, 0, 1)[None]) for a in arrays])

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``N x 3 x H x W`` → normalised float ``N x 3 x S x S`` (resize shortest side, centre crop)."""
        if x.dtype != torch.uint8:  # already preprocessed
            return x
        x = x.to(self.device).float().div_(255.0)
        s = self.image_size
        h, w = x.shape[-2:]
        if min(h, w) != s:
            scale = s / min(h, w)
            nh, nw = max(s, round(h * scale)), max(s, round(w * scale))
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
            h, w = nh, nw
        top, left = (h - s) // 2, (w - s) // 2
        x = x[..., top : top + s, left : left + s]
        return ((x - self._mean) / self._std).to(self.dtype)

    @torch.no_grad()
    def encode_images(self, images: ImageInput, batch_size: int = 64) -> np.ndarray:
        """Embed images (uint8 ``N x H x W x 3`` arrays or PIL images) → float32 ``(N, dim)``, unit norm."""
        x = self._to_tensor(images)
        out = []
        for lo in range(0, x.shape[0], batch_size):
            batch = self.preprocess(x[lo : lo + batch_size])
            out.append(F.normalize(self.model.encode_image(batch).float(), dim=-1).cpu())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return torch.cat(out).numpy()

    # -- text ---------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(texts)).to(self.device)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts → float32 ``(N, dim)``, unit norm."""
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        feats = self.model.encode_text(self.tokenize(texts))
        return F.normalize(feats.float(), dim=-1).cpu().numpy()

    @property
    def text_width(self) -> int:
        """Width of the text tower's token embeddings (the size of one soft token)."""
        return self._tower().width

    def text_fingerprint(self) -> str:
        """Hash of the text tower's weights (token and position embeddings, final norm, projection).

        Soft Query Refinement records it: soft tokens only mean something in the tower they were
        trained against. Computed once (a few hundred ms for a large vocabulary).
        """
        if getattr(self, "_text_fp", None) is None:
            tower = self._tower()
            h = hashlib.sha1(self.name.encode())
            for part in (tower.token_embedding, tower.positional_embedding, tower.ln_final, tower.projection):
                tensors = [part] if isinstance(part, torch.Tensor) else list(part.state_dict().values()) if part is not None else []
                for t in tensors:
                    h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
            self._text_fp = h.hexdigest()[:16]
        return self._text_fp

    def _tower(self) -> _TextTower:
        if self._text_tower is None:
            self._text_tower = _TextTower(self.model)
        return self._text_tower

    def encode_text_with_soft_tokens(self, texts: Sequence[str], soft_tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Encode texts with extra token embeddings inserted just before the pooling position.

        This is the hook Soft Query Refinement needs: learned soft tokens enter the
        retriever's own text encoder, which then pools as usual. The sequence keeps the
        model's context length: positions after the pooled token (padding) are dropped
        first; when there is no room, text tokens just before the insertion are dropped.
        With zero soft tokens the result equals :meth:`encode_text`. Gradients flow into
        ``soft_tokens`` (the encoder itself stays frozen).

        Args:
            texts: ``B`` query strings.
            soft_tokens: ``(K, W)`` shared by all texts or ``(B, K, W)``; ``W`` = :attr:`text_width`.
            normalize: L2-normalise the output.

        Returns:
            A ``(B, dim)`` tensor on the encoder's device.
        """
        tower = self._tower()
        ids = self.tokenize(texts)
        b, length = ids.shape
        soft = soft_tokens.to(self.device, self.dtype)
        if soft.dim() == 2:
            soft = soft.unsqueeze(0).expand(b, -1, -1)
        if soft.dim() != 3 or soft.shape[0] != b or soft.shape[2] != tower.width:
            raise InvalidArgumentError(
                f"soft_tokens must have shape (K, {tower.width}) or ({b}, K, {tower.width}); got {tuple(soft_tokens.shape)}"
            )
        k = soft.shape[1]
        if k >= length:
            raise InvalidArgumentError(f"at most {length - 1} soft tokens fit the context of {length}; got {k}")
        tok = tower.token_embedding(ids).to(self.dtype)
        pos = tower.pool_positions(ids)
        seqs, id_rows, pooled_at = [], [], []
        filler = torch.full((k,), 1 if tower.pad_id != 1 else 2, dtype=ids.dtype, device=ids.device)
        for i in range(b):
            p = int(pos[i])
            tail_room = length - 1 - p  # positions after the pooled token
            drop_before = max(0, k - tail_room)
            keep_to = p - drop_before
            if keep_to < 0:
                raise InvalidArgumentError("too many soft tokens for this query length")
            seq = torch.cat([tok[i, :keep_to], soft[i], tok[i, p:]])[:length]
            row = torch.cat([ids[i, :keep_to], filler, ids[i, p:]])[:length]
            seqs.append(seq)
            id_rows.append(row)
            pooled_at.append(keep_to + k)
        x = torch.stack(seqs)
        new_ids = torch.stack(id_rows)
        x = x + tower.positional_embedding[:length].to(self.dtype)
        attn_mask = tower.attn_mask
        if tower.use_pad_mask:
            valid = new_ids != tower.pad_id
            key_mask = valid.unsqueeze(1).expand(-1, length, -1)
            add = torch.zeros_like(key_mask, dtype=x.dtype).masked_fill_(~key_mask, float("-inf"))
            add = add.repeat_interleave(tower.heads, 0)
            attn_mask = add if attn_mask is None else attn_mask[:length, :length].unsqueeze(0) + add
        x = tower.transformer(x, attn_mask=attn_mask)
        x = tower.ln_final(x)
        pooled = x[torch.arange(b, device=x.device), torch.tensor(pooled_at, device=x.device)]
        proj = tower.projection
        if proj is not None:
            pooled = proj(pooled) if isinstance(proj, torch.nn.Linear) else pooled @ proj
        pooled = pooled.float()
        return F.normalize(pooled, dim=-1) if normalize else pooled
