"""Audio encoders from transformers (``AutoModel`` + ``AutoFeatureExtractor``) as :class:`AudioEncoder`.

The model is loaded from a local directory or a hub id (``from_pretrained``; nothing is
downloaded by this project's tests) and run with ``output_hidden_states=True``; the embedding
output is dropped, so Lh = number of transformer layers. How the token axis becomes time, per
family (``config.model_type``):

- ``audio-spectrogram-transformer`` (AST): the 2 leading [CLS]/distillation tokens are dropped,
  the patch grid (frequency x time, frequency-major as AST flattens it) is averaged over frequency.
  Step j covers fbank frames [j * time_stride, j * time_stride + patch_size): 100 / time_stride Hz
  (10 Hz for the released models). A window is ``max_length`` frames (10.24 s); the extractor pads
  every clip to it, so a clip's output does not depend on the rest of the batch.
- ``whisper``: the encoder of the encoder-decoder; one token per 2 mel frames, 50 Hz. A window is
  the extractor's ``n_samples`` (30 s), every clip padded to it.
- anything else (wav2vec2, HuBERT, WavLM, CLAP's audio tower, ...): tokens are taken as time in
  their order. The frame rate is ``16000 / config.inputs_to_logits_ratio`` where the config has it
  (wav2vec2 family, 50 Hz), otherwise nominal: tokens / seconds of input. For CLAP (``clap``,
  HTSAT) the audio tower is used, its 4-D stage outputs flattened to tokens, and only layers of
  one shape can be stacked: pass ``layers=[-1]``; CLAP tokens are not a real time axis.

Audio is resampled from 16 kHz to the extractor's rate when they differ (CLAP: 48 kHz).
"""

from __future__ import annotations

import inspect

import torch
import torchaudio

from av_lightning.encoders.base import AudioEncoder, EncoderOutput

AST = "audio-spectrogram-transformer"
WHISPER = "whisper"


class HFAudioEncoder(AudioEncoder):
    """A frozen transformers audio model: hidden states ``(B, T', Lh, d)`` of its layers.

    Args:
        model: local directory (or hub id) readable by ``AutoModel``/``AutoFeatureExtractor``.
        layers: indices into the layer outputs (embedding output excluded; negative counts from
            the end) to keep; None keeps all.
        chunk_seconds: window for long audio; None uses the model's own window (AST, Whisper) or
            encodes the whole clip at once (other families).
        local_files_only: never contact the hub (True for offline runs).
    """

    def __init__(
        self,
        model: str,
        layers: list[int] | None = None,
        chunk_seconds: float | None = None,
        local_files_only: bool = False,
    ):
        super().__init__()
        from transformers import AutoFeatureExtractor, AutoModel

        self.model_name = model
        loaded = AutoModel.from_pretrained(model, local_files_only=local_files_only)
        self.feature_extractor = AutoFeatureExtractor.from_pretrained(
            model, local_files_only=local_files_only
        )
        config = loaded.config
        self.family = getattr(config, "model_type", "")
        if hasattr(loaded, "audio_model"):  # CLAP: the audio tower
            loaded = loaded.audio_model
        elif getattr(config, "is_encoder_decoder", False):  # Whisper and other seq2seq models
            loaded = loaded.get_encoder()
        self.net = loaded
        self.config = self.net.config
        self.layers = list(layers) if layers is not None else None
        self.extractor_rate = int(
            getattr(self.feature_extractor, "sampling_rate", self.sample_rate)
        )
        self._accepts = set(inspect.signature(self.net.forward).parameters)
        self._setup_family(chunk_seconds)
        self.requires_grad_(False)
        self.eval()
        probe = self._window(torch.zeros(1, max(self.min_samples, self.sample_rate)), None)[0]
        self.num_layers, self.hidden_size = probe.shape[2], probe.shape[3]

    def _setup_family(self, chunk_seconds: float | None) -> None:
        """Window (samples), steps per window and minimum length of the model family."""
        fe = self.feature_extractor
        self.window_samples: int | None = None
        self.window_steps: int | None = None
        self.min_samples = 400
        if self.family == AST:
            hop, frame = 160, 400  # AST's kaldi fbank: 25 ms frames every 10 ms
            patch, stride = self.config.patch_size, self.config.time_stride
            self.freq_patches = (
                self.config.num_mel_bins - patch
            ) // self.config.frequency_stride + 1
            self.time_patches = (self.config.max_length - patch) // stride + 1
            self.window_samples = (self.config.max_length - 1) * hop + frame
            self.window_steps = self.time_patches
            self.min_samples = (patch - 1) * hop + frame
            self._rate = self.sample_rate / (hop * stride)
        elif self.family == WHISPER:
            hop = fe.hop_length
            self.window_samples = fe.n_samples
            self._rate = self.sample_rate / (2 * hop)  # conv2 has stride 2
            self.window_steps = self.window_samples // (2 * hop)
            self.min_samples = 1
        else:
            ratio = getattr(self.config, "inputs_to_logits_ratio", None)
            self._rate = self.sample_rate / ratio if ratio else None
        if chunk_seconds is not None:
            window = round(chunk_seconds * self.sample_rate)
            if self.window_samples is not None and window > self.window_samples:
                raise ValueError(
                    f"chunk_seconds={chunk_seconds} exceeds the model's window "
                    f"({self.window_samples / self.sample_rate:.2f} s); use at most that"
                )
            if self.window_samples is not None:
                # keep whole steps so that the windows' grids line up
                self.window_steps = max(1, int(self.window_steps * window / self.window_samples))
            else:
                self.window_samples = window

    def settings(self) -> dict:
        return {
            "class": type(self).__name__,
            "model": self.model_name,
            "layers": self.layers,
            "window_samples": self.window_samples,
        }

    def train(self, mode: bool = True) -> HFAudioEncoder:
        return super().train(False)  # frozen feature network

    # ------------------------------------------------------------------ one window

    def _steps(self, lengths: torch.Tensor, tokens: int, padded: int) -> torch.Tensor:
        """Real time steps per item for ``lengths`` samples (16 kHz) of a ``padded``-sample input."""
        if self.family == AST:
            frames = torch.where(
                lengths >= 400, 1 + (lengths - 400) // 160, torch.zeros_like(lengths)
            )
            steps = (frames - self.config.patch_size) // self.config.time_stride + 1
            return steps.clamp(0, tokens)
        if self.family == WHISPER:
            return torch.div(
                lengths + 2 * self.feature_extractor.hop_length - 1,
                2 * self.feature_extractor.hop_length,
                rounding_mode="floor",
            ).clamp(max=tokens)
        if (
            hasattr(self.net, "_get_feat_extract_output_lengths")
            and self.extractor_rate == self.sample_rate
        ):
            return self.net._get_feat_extract_output_lengths(lengths).long().clamp(0, tokens)
        return torch.ceil(lengths.double() * tokens / padded).long().clamp(0, tokens)

    def _window(
        self, waveform: torch.Tensor, lengths: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, S)`` (one window) -> ``(B, T, Lh, d)`` states and ``(B,)`` real steps."""
        if lengths is None:
            lengths = torch.full((waveform.shape[0],), waveform.shape[1], dtype=torch.long)
        clips = [w[: int(n)].float() for w, n in zip(waveform.cpu(), lengths.cpu())]
        clips = [c if c.numel() else c.new_zeros(self.min_samples) for c in clips]
        if self.extractor_rate != self.sample_rate:
            clips = [
                torchaudio.functional.resample(c, self.sample_rate, self.extractor_rate)
                for c in clips
            ]
        kwargs = {"sampling_rate": self.extractor_rate, "return_tensors": "pt"}
        if self.family not in (AST, WHISPER):
            kwargs["padding"] = True
        inputs = self.feature_extractor([c.numpy() for c in clips], **kwargs)
        device = next(self.net.parameters()).device
        dtype = next(self.net.parameters()).dtype
        inputs = {
            k: (v.to(device, dtype) if v.is_floating_point() else v.to(device))
            for k, v in inputs.items()
            if k in self._accepts and isinstance(v, torch.Tensor)
        }
        out = self.net(**inputs, output_hidden_states=True)
        hidden = list(out.hidden_states[1:])  # drop the embedding output
        if self.layers is not None:
            hidden = [hidden[i] for i in self.layers]
        hidden = [
            h.flatten(2).transpose(1, 2) if h.dim() == 4 else h for h in hidden
        ]  # (B, C, H, W) stages
        shapes = {tuple(h.shape) for h in hidden}
        if len(shapes) != 1:
            raise ValueError(
                f"{self.model_name}: the selected hidden states have different shapes {sorted(shapes)}; "
                "choose layers of one shape, e.g. layers=[-1]"
            )
        states = torch.stack(hidden, dim=2)  # (B, N, Lh, d)
        if self.family == AST:
            b, _, lh, d = states.shape
            states = (
                states[:, 2:].reshape(b, self.freq_patches, self.time_patches, lh, d).mean(dim=1)
            )
        padded = max(c.numel() for c in clips) * self.sample_rate // self.extractor_rate
        return states, self._steps(lengths.to(states.device), states.shape[1], padded)

    # ------------------------------------------------------------------ public API

    @torch.no_grad()
    def encode(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> EncoderOutput:
        """``(B, S)`` 16 kHz -> ``(B, T', Lh, d)`` on the family's time axis; call via ``forward``."""
        if lengths is None:
            lengths = torch.full((waveform.shape[0],), waveform.shape[1], dtype=torch.long)
        lengths = lengths.cpu()
        if self.window_samples is None or waveform.shape[1] <= self.window_samples:
            states, steps = self._window(waveform, lengths)
            rate = self._rate or states.shape[1] * self.sample_rate / waveform.shape[1]
            return self._output(states[:, : int(steps.max())], steps, rate)
        if self.window_steps is None:  # generic family with chunk_seconds: back-to-back windows
            stride = self.window_samples
        else:
            stride = round(self.window_steps * self.sample_rate / self._rate)
        parts, counts = [], []
        for start in range(0, waveform.shape[1], stride):
            chunk_lengths = (lengths - start).clamp(0, self.window_samples)
            if int(chunk_lengths.max()) < self.min_samples:
                break
            states, steps = self._window(
                waveform[:, start : start + self.window_samples], chunk_lengths
            )
            keep = min(states.shape[1], self.window_steps or states.shape[1])
            parts.append(states[:, :keep])
            counts.append(steps.clamp(max=keep))
        rate = self._rate or parts[0].shape[1] * self.sample_rate / stride
        # an item's steps are real only up to its first incomplete window
        steps = torch.zeros_like(counts[0])
        open_ = torch.ones_like(counts[0], dtype=torch.bool)
        for part, count in zip(parts, counts):
            steps = steps + count * open_
            open_ = open_ & (count == part.shape[1])
        states = torch.cat(parts, dim=1)
        return self._output(states[:, : int(steps.max())], steps, rate)

    def _output(self, states: torch.Tensor, steps: torch.Tensor, rate: float) -> EncoderOutput:
        mask = (
            torch.arange(states.shape[1], device=states.device)[None, :]
            < steps.to(states.device)[:, None]
        )
        return EncoderOutput(states * mask[..., None, None], float(rate), mask)


def describe_time_axis(encoder: HFAudioEncoder) -> str:
    """One line saying how ``encoder`` maps tokens to time (for logs and docs)."""
    if encoder.family == AST:
        return f"AST: frequency patches averaged, {encoder._rate:g} Hz"
    if encoder.family == WHISPER:
        return f"Whisper encoder: one token per 2 mel frames, {encoder._rate:g} Hz"
    rate = f"{encoder._rate:g} Hz" if encoder._rate else "nominal rate (tokens / seconds)"
    return f"{encoder.family}: tokens as time, {rate}"
