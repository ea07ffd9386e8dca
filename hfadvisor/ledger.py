"""The ledger: what a run asked of its endpoints (requests, retries, failures, tokens, latency).

Kept per run and per round (each call is counted in the client's ledger and its round's), saved
with every revision so cost and reliability are visible after the fact. It lives beside the
records, not in `llm/`, so that reading a run never imports the endpoint client.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field


@dataclass(frozen=True)
class Cost:
    """Spend in the price's currency (prices are per 1M tokens, given by the user; no built-in table).

    `input_reported` is "none" when the endpoint reported no prompt tokens (TGI without the
    x-prompt-tokens header): the cost then covers output tokens only, and says so.
    """

    input: float
    output: float
    total: float
    input_reported: str

    def label(self) -> str:
        """`0.0123` or `0.0123 (output only: input tokens not reported)`: for cards, logs and progress."""
        note = {"none": " (output only: input tokens not reported)", "some": " (input tokens partly reported)"}
        return f"{self.total:.4f}{note.get(self.input_reported, '')}"


class StageCounts(BaseModel):
    requests: int = 0
    completion_tokens: int = 0
    structured: int = Field(0, description="answers constrained by the stage's JSON schema (grammar/response_format)")
    text: int = Field(0, description="answers on the text path (no schema sent, refused, or ignored by the server)")


class Ledger(BaseModel):
    requests: int = Field(0, description="successful calls")
    attempts: int = Field(0, description="HTTP calls made, retries included")
    retries: int = 0
    failures: int = Field(0, description="calls given up after the retry budget")
    rate_limited: int = Field(0, description="429/503/overloaded answers seen")
    timeouts: int = 0
    connection_errors: int = 0
    malformed: int = Field(0, description="answers that were not valid protocol JSON")
    prompt_tokens: int = Field(
        0, description="as reported by the server (chat `usage`, TGI's x-prompt-tokens header); 0 when not reported"
    )
    prompt_reported: int = Field(0, description="successful calls whose server reported their prompt tokens")
    completion_tokens: int = 0
    latency_total: float = Field(0.0, description="seconds, successful calls")
    latency_max: float = 0.0
    backoff_total: float = Field(0.0, description="seconds slept between retries")
    throttled: int = Field(0, description="times overload answers lowered the adaptive concurrency limit")
    concurrency: int = Field(0, description="the adaptive concurrency limit after the last call (0: no call yet)")
    structured_refused: int = Field(0, description="calls refused for carrying a JSON schema (then re-sent as text)")
    structured_ignored: int = Field(0, description="answers that were not JSON although a schema was sent")
    by_stage: dict[str, StageCounts] = Field(default_factory=dict)
    by_endpoint: dict[str, int] = Field(default_factory=dict)

    @property
    def latency_mean(self) -> float:
        return self.latency_total / self.requests if self.requests else 0.0

    @property
    def tokens(self) -> int:
        """Prompt + completion tokens: what a token budget counts (prompt tokens only where reported)."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def input_reported(self) -> str:
        """Whether the servers reported prompt tokens: "all", "some" or "none" of the calls.

        Ledgers stored before `prompt_reported` existed count as reported when they hold prompt tokens.
        """
        reported = self.prompt_reported or (self.requests if self.prompt_tokens else 0)
        if not self.requests or reported >= self.requests:
            return "all"
        return "some" if reported else "none"

    def cost(self, price_input: float | None, price_output: float | None) -> Cost | None:
        """The spend at these prices (per 1M tokens); None when no price is given."""
        if price_input is None and price_output is None:
            return None
        usd_in = self.prompt_tokens * (price_input or 0.0) / 1e6
        usd_out = self.completion_tokens * (price_output or 0.0) / 1e6
        return Cost(input=usd_in, output=usd_out, total=usd_in + usd_out, input_reported=self.input_reported)

    def record_success(
        self,
        stage: str,
        endpoint: str,
        latency: float,
        prompt_tokens: int | None,
        completion_tokens: int,
        structured: bool = False,
    ) -> None:
        """One answered call; `prompt_tokens` None = the server did not report them."""
        self.requests += 1
        if prompt_tokens is not None:
            self.prompt_tokens += prompt_tokens
            self.prompt_reported += 1
        self.completion_tokens += completion_tokens
        self.latency_total += latency
        self.latency_max = max(self.latency_max, latency)
        st = self.by_stage.setdefault(stage, StageCounts())
        st.requests += 1
        st.completion_tokens += completion_tokens
        if structured:
            st.structured += 1
        else:
            st.text += 1
        self.by_endpoint[endpoint] = self.by_endpoint.get(endpoint, 0) + 1

    def snapshot(self) -> Ledger:
        return self.model_copy(deep=True)

    def plus(self, other: Ledger) -> Ledger:
        out = self.snapshot()
        for name in (
            "requests", "attempts", "retries", "failures", "rate_limited", "timeouts",
            "connection_errors", "malformed", "prompt_tokens", "prompt_reported", "completion_tokens",
            "latency_total", "backoff_total", "throttled", "structured_refused", "structured_ignored",
        ):  # fmt: skip
            setattr(out, name, getattr(self, name) + getattr(other, name))
        out.latency_max = max(self.latency_max, other.latency_max)
        out.concurrency = other.concurrency or self.concurrency  # a gauge: the later reading
        for stage, counts in other.by_stage.items():
            st = out.by_stage.setdefault(stage, StageCounts())
            st.requests += counts.requests
            st.completion_tokens += counts.completion_tokens
            st.structured += counts.structured
            st.text += counts.text
        for k, v in other.by_endpoint.items():
            out.by_endpoint[k] = out.by_endpoint.get(k, 0) + v
        return out

    def answer_paths(self) -> str:
        """Which path each stage's answers took, for cards and logs: `generate: structured 12, text 0`."""
        return "; ".join(
            f"{stage}: structured {c.structured}, text {c.text}" for stage, c in self.by_stage.items() if c.requests
        )
