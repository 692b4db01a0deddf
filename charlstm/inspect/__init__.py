"""Looking inside a trained LSTM: every unit's h, c and gates on a text (activations),
features of the text to compare them with (features), units ranked by how well they
follow each feature, what ablating a unit costs (ablation), spans like a query (match),
and the report that shows it all (report, with the page's files in web/).

`inspect_text(model, text)` is `charlstm inspect` in one call (see pipeline.py)."""

from __future__ import annotations


def __getattr__(name: str):
    # The pipeline needs torch; charlstm.inspect.features alone should not.
    if name in ("inspect_text", "Inspection"):
        from charlstm.inspect import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'charlstm.inspect' has no attribute {name!r}")


__all__ = ["Inspection", "inspect_text"]
