"""Text-generation endpoints (TGI native or OpenAI-compatible chat) behind one client."""

from hfadvisor.llm.client import ChatTemplate, Completion, LLMClient, Message, display_url, load_chat_template
from hfadvisor.llm.connect import Budget, Endpoint, connect
from hfadvisor.llm.ledger import Ledger

__all__ = [
    "Budget",
    "ChatTemplate",
    "Completion",
    "Endpoint",
    "LLMClient",
    "Ledger",
    "Message",
    "connect",
    "display_url",
    "load_chat_template",
]
