"""`hfadvisor train`: fine-tune a model on a run's data (TRL SFT + PEFT LoRA; QLoRA on a GPU).

Heavy imports (torch, transformers, trl, peft) happen inside the functions, so importing this
package stays cheap for the CLI.
"""

from hfadvisor.train.config import TrainConfig
from hfadvisor.train.trainer import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
