"""`charlstm info`: what a checkpoint holds."""

from __future__ import annotations

import math

from charlstm.cli.common import CheckpointOpt, load_model, out


def info(checkpoint: CheckpointOpt = None) -> None:
    """What a checkpoint holds: config, vocabulary, size, step, best loss."""
    import yaml

    from charlstm.model import bits_per_char

    model = load_model(checkpoint)
    best = model.best_val_loss
    out.print(
        yaml.safe_dump(model.config.to_dict(), sort_keys=False, allow_unicode=True).rstrip(),
        markup=False,
    )
    shown = f"{best:.4f} ({bits_per_char(best):.4f} bpc)" if math.isfinite(best) else "none yet"
    out.print(
        f"vocabulary: {model.vocab.size} ({model.vocab.mode})\n"
        f"parameters: {model.net.num_parameters():,}\nstep: {model.step}\nbest val loss: {shown}"
    )
