"""hfadvisor: safety-alignment datasets with the Data Advisor loop, native to the Hugging Face ecosystem."""

__version__ = "0.1.0"

from hfadvisor.api import load_run, plan_run, run
from hfadvisor.config import RunConfig

__all__ = ["RunConfig", "__version__", "load_run", "plan_run", "run"]
