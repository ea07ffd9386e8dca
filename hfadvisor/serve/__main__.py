"""`python -m hfadvisor.serve`: the TGI-protocol server as a plain process (used by `embedded_endpoint`)."""

from __future__ import annotations

import argparse
import sys

from hfadvisor.errors import HFAdvisorError
from hfadvisor.serve.process import DEFAULT_MAX_BATCH_SIZE, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hfadvisor.serve", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--model", default=None, help="local transformers folder (default: embedded SmolLM2)")
    parser.add_argument("--tiny", action="store_true", help="tiny random-weight model, for protocol tests")
    parser.add_argument("--max-batch-size", type=int, default=DEFAULT_MAX_BATCH_SIZE)
    parser.add_argument("--max-concurrent-requests", type=int, default=128)
    parser.add_argument(
        "--no-grammar", action="store_true", help="refuse structured output (422), like TGI's --disable-grammar-support"
    )
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--fd", type=int, default=None, help=argparse.SUPPRESS)  # inherited listening socket
    parser.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        serve(
            host=args.host,
            port=args.port,
            model=args.model,
            max_batch_size=args.max_batch_size,
            log_level=args.log_level,
            tiny=args.tiny,
            max_concurrent_requests=args.max_concurrent_requests,
            fd=args.fd,
            exit_with_parent=args.exit_with_parent,
            grammar=not args.no_grammar,
        )
    except HFAdvisorError as exc:
        print(f"hfadvisor: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
