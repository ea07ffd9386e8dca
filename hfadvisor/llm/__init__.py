"""Text-generation endpoints (TGI native or OpenAI-compatible chat) behind one client."""

from hfadvisor.llm.client import Completion, LLMClient, display_url
from hfadvisor.llm.connect import Budget, Endpoint, EndpointSpec, connect
from hfadvisor.llm.template import ChatTemplate, Message, load_chat_template

__all__ = [
    "Budget",
    "ChatTemplate",
    "Completion",
    "Endpoint",
    "EndpointSpec",
    "LLMClient",
    "Message",
    "connect",
    "display_url",
    "load_chat_template",
]
