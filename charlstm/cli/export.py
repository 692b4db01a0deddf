"""`charlstm export`: a one-file web page that writes in the browser, or an ONNX step
model (see charlstm/export/)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from charlstm.cli.common import CheckpointOpt, check_out_file, load_model, out
from charlstm.errors import CharlstmError

FORMATS = ("html", "onnx", "safetensors")


def export(
    out_file: Annotated[
        Path,
        typer.Option("--out", help="What to write: the page (.html), the .onnx file, or a folder."),
    ],
    checkpoint: CheckpointOpt = None,
    precision: Annotated[
        str,
        typer.Option(
            "--precision", help="fp16 (half the size) or fp32 (exactly sample's numbers)."
        ),
    ] = "fp16",
    title: Annotated[str, typer.Option("--title", help="The page's title.")] = "",
    form: Annotated[
        str,
        typer.Option(
            "--format",
            help="html (a page that writes in the browser), onnx (a step model) or "
            "safetensors (a folder: model.safetensors and config.json).",
        ),
    ] = "html",
) -> None:
    """Write the model as a web page that writes in the browser, or as ONNX.

    The page is one self-contained file; --format onnx writes a step model for
    onnxruntime."""
    from charlstm.export.page import check_precision, export_page

    if form not in FORMATS:
        raise CharlstmError(f"--format must be html, onnx or safetensors (got {form!r})")
    check_precision(precision)
    check_out_file(out_file, "--out")
    if form == "safetensors":
        from charlstm.checkpoint import read_checkpoint, resolve_checkpoint, write_safetensors

        saved = read_checkpoint(resolve_checkpoint(checkpoint))
        try:
            size = write_safetensors(out_file, saved)
        except OSError as error:
            raise CharlstmError(f"cannot write {out_file}: {error.strerror}") from None
        out.print(f"wrote {out_file}/: {size / 1e6:.2f} MB, model.safetensors and "
                  "config.json; every command opens it as --checkpoint")  # fmt: skip
        return
    if form == "onnx":
        from charlstm.export.onnx import export_onnx

        size = export_onnx(load_model(checkpoint), out_file)
        out.print(f"wrote {out_file}: {size / 1e6:.2f} MB, an ONNX step model (opset 17)")
        return
    exported = export_page(load_model(checkpoint), out_file, precision, title)
    out.print(
        f"wrote {exported.path}: {exported.bytes / 1e6:.2f} MB, {exported.parameters:,} "
        f"parameters ({precision}); open it in a browser, or add "
        "#prime=...&length=300&autorun=1 to its address"
    )
