"""`charlstm export`: a one-file web page that writes in the browser, or an ONNX step
model (see charlstm/export/)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from charlstm.cli.common import CheckpointOpt, check_out_file, load_model, option_of, out
from charlstm.errors import CharlstmError
from charlstm.options import ExportSettings

E = ExportSettings()


def export(
    out_file: Annotated[
        Path,
        typer.Option("--out", help="What to write: the page (.html), the .onnx file, or a folder."),
    ],
    checkpoint: CheckpointOpt = None,
    precision: Annotated[str, option_of(ExportSettings, "precision", "--precision")] = E.precision,
    title: Annotated[str, option_of(ExportSettings, "title", "--title")] = E.title,
    form: Annotated[str, option_of(ExportSettings, "format", "--format")] = E.format,
) -> None:
    """Write the model as a web page that writes in the browser, or as ONNX.

    The page is one self-contained file; --format onnx writes a step model for
    onnxruntime."""
    from charlstm.export.page import export_page

    settings = ExportSettings(form, precision, title)  # each one checked before any work
    check_out_file(out_file, "--out")
    if form == "safetensors":
        from charlstm.checkpoint import read_checkpoint, resolve_checkpoint, write_safetensors
        from charlstm.export.tokenizer import write_tokenizer

        saved = read_checkpoint(resolve_checkpoint(checkpoint))
        try:
            size = write_safetensors(out_file, saved) + write_tokenizer(out_file, saved.vocab)
        except OSError as error:
            raise CharlstmError(f"cannot write {out_file}: {error.strerror}") from None
        out.print(f"wrote {out_file}/: {size / 1e6:.2f} MB, model.safetensors, config.json "
                  "and the tokenizer (tokenizer.json, tokenizer_config.json); every command "
                  "opens it as --checkpoint, transformers.AutoTokenizer as a folder")  # fmt: skip
        return
    if form == "onnx":
        from charlstm.export.onnx import export_onnx

        size = export_onnx(load_model(checkpoint), out_file)
        out.print(f"wrote {out_file}: {size / 1e6:.2f} MB, an ONNX step model (opset 17)")
        return
    exported = export_page(load_model(checkpoint), out_file, settings.precision, settings.title)
    out.print(
        f"wrote {exported.path}: {exported.bytes / 1e6:.2f} MB, {exported.parameters:,} "
        f"parameters ({precision}); open it in a browser, or add "
        "#prime=...&length=300&autorun=1 to its address"
    )
