"""The `psl` command."""

from __future__ import annotations

import typer

import psl

app = typer.Typer(
    help="Pseudo strong labels for large-scale weakly supervised audio tagging.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
bench_app = typer.Typer(help="Benchmarks that compare psl with a baseline measured in the same run.")
app.add_typer(bench_app, name="bench")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"psl {psl.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Pseudo strong labels for large-scale weakly supervised audio tagging."""


@bench_app.command("ops")
def bench_ops(
    batch: int = typer.Option(32, min=1, help="Clips per call."),
    seconds: float = typer.Option(10.0, min=0.1, help="Clip duration in seconds (16 kHz)."),
    threads: int = typer.Option(0, min=0, help="CPU threads for psl and torchaudio alike (0: torch's default)."),
    device: str = typer.Option("auto", help="cpu, cuda, or auto (cpu, and cuda when present)."),
    repeats: int = typer.Option(7, min=1, help="Interleaved repetitions; medians are reported."),
) -> None:
    """log_mel against torchaudio and chunk_pool against its pure-torch reference."""
    import torch

    from psl import ops
    from psl.bench import ops as bench
    from psl.bench.timing import format_table

    if threads:
        torch.set_num_threads(threads)
    if device == "auto":
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    elif device in ("cpu", "cuda"):
        if device == "cuda" and not torch.cuda.is_available():
            raise typer.BadParameter("no CUDA device is available", param_hint="--device")
        devices = [torch.device(device)]
    else:
        raise typer.BadParameter(f"expected cpu, cuda or auto, got {device!r}", param_hint="--device")
    native = "native kernels" if ops.native_available() else "NO native kernels (pure-torch fallback)"
    typer.echo(f"psl {psl.__version__}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {native}")
    if torch.cuda.is_available():
        typer.echo(f"GPU: {torch.cuda.get_device_name()}")
    typer.echo(format_table(bench.run(devices, batch, seconds, repeats)))
