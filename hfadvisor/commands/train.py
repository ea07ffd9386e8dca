"""`hfadvisor train DATA -o DIR`: fine-tune a model on an export (or a run after `respond`) with LoRA.

The defaults are the paper's reference settings (LoRA r 32, alpha 16, dropout 0.1, lr 2e-5,
batch 1 × 32 accumulation, 1 epoch, 4-bit NF4 base on a GPU). torch/trl/peft load only inside
the command, so `hfadvisor --help` stays fast without the `train` extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hfadvisor.commands._common import Token, fail, say
from hfadvisor.errors import HFAdvisorError

HELP = (
    "Fine-tune a model on a run's data (TRL SFT + LoRA; QLoRA on a GPU), save the adapter with a model card, "
    "optionally push it."
)


def train(
    data: Annotated[Path, typer.Argument(help="export directory (hfadvisor export) or run directory after respond")],
    output: Annotated[Path, typer.Option("--output", "-o", help="training output: checkpoints, adapter, card")],
    base_model: Annotated[
        str | None, typer.Option(help="local model folder or Hub id \\[default: the embedded SmolLM2-135M-Instruct]")
    ] = None,
    lora_r: Annotated[int, typer.Option(help="LoRA rank")] = 32,
    lora_alpha: Annotated[float, typer.Option(help="LoRA alpha")] = 16,
    lora_dropout: Annotated[float, typer.Option(help="LoRA dropout")] = 0.1,
    learning_rate: Annotated[float, typer.Option("--learning-rate", "--lr", help="peak learning rate")] = 2e-5,
    batch_size: Annotated[int, typer.Option(help="sequences per device step")] = 1,
    grad_accum: Annotated[int, typer.Option(help="gradient accumulation steps per optimizer step")] = 32,
    epochs: Annotated[float, typer.Option(help="passes over the training rows")] = 1.0,
    max_steps: Annotated[int | None, typer.Option(help="stop after N optimizer steps (overrides --epochs)")] = None,
    max_length: Annotated[int, typer.Option(help="max tokens per conversation (longer ones are cut)")] = 1024,
    quantize: Annotated[
        str, typer.Option(help="auto (4-bit NF4 on a CUDA GPU, else none), none (LoRA), 4bit (QLoRA; needs CUDA)")
    ] = "auto",
    mix_with: Annotated[
        str | None,
        typer.Option(
            help="Hub id of general instruction data to mix in (columns messages, instruction/input/output, "
            "or prompt/response)"
        ),
    ] = None,
    mix_ratio: Annotated[float, typer.Option(help="share of general rows in the training mix, in [0, 1)")] = 0.5,
    mix_split: Annotated[str, typer.Option(help="split of --mix-with to load")] = "train",
    system: Annotated[
        str | None, typer.Option(help="system message when DATA is a run directory (exported on the fly)")
    ] = None,
    save_steps: Annotated[int, typer.Option(help="save a checkpoint every N optimizer steps (and at the end)")] = 100,
    logging_steps: Annotated[int, typer.Option(help="log the loss every N optimizer steps")] = 10,
    evaluate: Annotated[bool, typer.Option("--eval/--no-eval", help="validation loss at the end")] = True,
    seed: Annotated[int, typer.Option(help="seed for shuffling, sampling the mix and LoRA init")] = 0,
    threads: Annotated[int | None, typer.Option(help="CPU threads \\[default: torch's, one per core]")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue from the last checkpoint in --output")] = False,
    merge: Annotated[bool, typer.Option("--merge", help="also save the merged model in OUTPUT/merged")] = False,
    push_to_hub: Annotated[
        str | None, typer.Option(help="Hub model repo to upload the adapter (merged model with --merge) to")
    ] = None,
    public: Annotated[bool, typer.Option("--public", help="create the Hub repo public (default: private)")] = False,
    token: Token = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="show the progress bar")] = True,
) -> None:
    from hfadvisor.train import TrainConfig
    from hfadvisor.train import train as do_train

    try:
        config = TrainConfig.build(
            data=str(data),
            output_dir=str(output),
            base_model=base_model,
            lora_r=lora_r,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            learning_rate=learning_rate,
            batch_size=batch_size,
            grad_accum=grad_accum,
            epochs=epochs,
            max_steps=max_steps,
            max_length=max_length,
            quantize=quantize,
            mix_with=mix_with,
            mix_ratio=mix_ratio,
            mix_split=mix_split,
            system=system,
            save_steps=save_steps,
            logging_steps=logging_steps,
            evaluate=evaluate,
            merge=merge,
            seed=seed,
            threads=threads,
        )
        result = do_train(
            config, resume=resume, push_to_hub=push_to_hub, private=not public, token=token, progress=progress
        )
    except HFAdvisorError as e:
        raise fail(str(e), e.exit_code) from None
    loss = f"{result.train_loss:.4f}" if result.train_loss is not None else "—"
    speed = (
        f", {result.seconds_per_step:.2f} s/step, {result.tokens_per_second:.0f} tokens/s"
        if result.seconds_per_step and result.tokens_per_second
        else ""
    )
    start = f" (resumed from {result.resumed_from})" if result.resumed_from else ""
    say(
        f"trained {result.steps_this_run} steps{start} to step {result.global_step} on {result.train_rows} rows "
        f"({result.device}{', 4-bit' if result.quantized else ''}): loss {loss}{speed}"
    )
    say(f"model and card in {result.model_dir}")
    for note in result.notes:
        say(f"note: {note}")
    if result.pushed:
        say(f"pushed to {result.pushed}")


def register(app: typer.Typer) -> None:
    app.command("train", help=HELP)(train)
