"""Deploy the Space to the Hub: `publish_space("owner/name", runs=[...])` makes a Gradio Space that builds.

The Space gets, in one commit: `app.py` (the repository's `spaces/app.py`), a README with the
Space metadata (gradio `sdk_version` = the installed gradio), `hfadvisor-space.json` (the run
repos shown on load), the wheel of the installed hfadvisor built from its source tree, and a
`requirements.txt` with that wheel's dependencies (extras space, embedded, metrics).

Why the wheel is not a line of requirements.txt: the Space builder runs
`pip install -r /tmp/requirements.txt` with only that file mounted, before the repository is
copied in, so a path to a file of the repository cannot resolve there. `app.py` installs the
wheel beside it (`pip install --no-deps --target`) when it starts. So the Space works before any
PyPI release, and it runs exactly the hfadvisor that published it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import zipfile
from email.parser import Parser
from pathlib import Path

from hfadvisor.errors import MissingDependencyError, PublishError, scrub
from hfadvisor.space.sources import HUB_ID_RE

EXTRAS = ("space", "embedded", "metrics")
CONFIG_FILE = "hfadvisor-space.json"  # read by spaces/app.py
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"  # Space hardware is CPU; the default torch wheel pulls CUDA


def source_root() -> Path:
    """The hfadvisor source tree the installed package comes from (its wheel is built from it)."""
    import hfadvisor

    root = Path(hfadvisor.__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file() or not (root / "spaces" / "app.py").is_file():
        raise PublishError(
            f"publishing a Space builds hfadvisor's wheel from its source tree, and {root} is not one: "
            "run it from a checkout of the hfadvisor repository (pip install -e .)"
        )
    return root


def build_wheel(dest: Path) -> Path:
    """The wheel of the installed hfadvisor, built with pip (hatchling; offline when it is installed)."""
    root = source_root()
    cmd = [sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "--quiet", "--wheel-dir", str(dest)]
    try:
        import hatchling  # noqa: F401 - present: build without fetching it into an isolated environment
    except ModuleNotFoundError:
        pass
    else:
        cmd.append("--no-build-isolation")
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("hfadvisor-*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise PublishError(f"building the hfadvisor wheel failed ({last}); try: pip wheel {root} --no-deps")
    return wheels[-1]


def wheel_requirements(wheel: Path, extras: tuple[str, ...] = EXTRAS) -> list[str]:
    """The wheel's dependencies with `extras` (from its METADATA), markers evaluated for them."""
    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(z.read(name).decode("utf-8"))
    out: list[str] = []
    for line in meta.get_all("Requires-Dist") or []:
        req = Requirement(line)
        wanted = req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras))
        if wanted:
            req.marker = None
            if str(req) not in out:
                out.append(str(req))
    return out


def requirements_txt(wheel: Path) -> str:
    lines = [
        f"# Written by hfadvisor.space.publish for {wheel.name}.",
        "# The builder installs this file before the repository is copied in, so hfadvisor itself is",
        f"# not a line here: app.py installs ./{wheel.name} (beside it) with --no-deps when it starts.",
        "# CPU build of torch: Space hardware has no GPU by default, and the default wheel pulls CUDA.",
        f"--extra-index-url {TORCH_CPU_INDEX}",
        *wheel_requirements(wheel),
    ]
    return "\n".join(lines) + "\n"


def readme(repo_id: str, runs: list[str]) -> str:
    """The Space card: metadata the Hub builds from (sdk, sdk_version, app_file) and what it shows."""
    import gradio
    from huggingface_hub import SpaceCard, SpaceCardData

    data = SpaceCardData(
        title="hfadvisor — Data Advisor runs",
        emoji="🧭",
        colorFrom="blue",
        colorTo="indigo",
        sdk="gradio",
        sdk_version=gradio.__version__,
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
        app_file="app.py",
        pinned=False,
        license="apache-2.0",
        short_description="Watch a Data Advisor run round by round; compare runs",
        tags=["synthetic-data", "safety", "data-advisor"],
    )
    shown = "\n".join(f"* [{r}](https://huggingface.co/datasets/{r})" for r in runs) or "* (none: type a repo id)"
    body = (
        f"# {repo_id.split('/')[-1]}\n\n"
        "Watch a [Data Advisor](https://arxiv.org/abs/2410.05269) run round by round: the weakness each round "
        "targeted, how the summary changed, the rows it wrote and what it rejected; compare runs; start a small "
        "run on the embedded SmolLM2-135M model.\n\n"
        "**Content warning:** the rows are harmful requests, generated to train models to refuse them.\n\n"
        f"Runs shown on load (`{CONFIG_FILE}`; the `HFADVISOR_SPACE_RUNS` variable overrides it):\n\n{shown}\n\n"
        "Published with `hfadvisor space publish`; `app.py` runs the hfadvisor wheel shipped beside it.\n"
    )
    return str(SpaceCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))


def space_files(repo_id: str, runs: list[str], wheel: Path) -> dict[str, bytes]:
    """Every file of the Space but the wheel, by path in the repo."""
    app = (source_root() / "spaces" / "app.py").read_bytes()
    config = {"runs": runs, "wheel": wheel.name}
    return {
        "app.py": app,
        "README.md": readme(repo_id, runs).encode(),
        "requirements.txt": requirements_txt(wheel).encode(),
        CONFIG_FILE: (json.dumps(config, indent=1) + "\n").encode(),
    }


def publish_space(repo_id: str, *, runs: list[str], private: bool = True, token: str | None = None) -> str:
    """Create or update the Gradio Space `repo_id` showing `runs` (Hub dataset repo ids); one commit.

    Returns the Space URL. The token authenticates the calls and is written nowhere.
    """
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    if not HUB_ID_RE.match(repo_id or ""):
        raise PublishError(f"{repo_id!r} is not a Space repo id: use owner/name")
    bad = [r for r in runs if not HUB_ID_RE.match(r)]
    if bad:
        raise PublishError(f"{bad[0]!r} is not a Hub dataset repo id (owner/name): the Space opens runs from the Hub")
    try:
        import gradio  # noqa: F401 - its version goes in the README
    except ModuleNotFoundError:
        raise MissingDependencyError("publishing a Space needs gradio: pip install 'hfadvisor[space]'") from None
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="hfadvisor-space-") as tmp:
        wheel = build_wheel(Path(tmp))
        files = space_files(repo_id, list(runs), wheel)
        operations = [CommitOperationAdd(path, content) for path, content in files.items()]
        operations.append(CommitOperationAdd(wheel.name, str(wheel)))
        try:
            url = api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
            api.create_commit(
                repo_id,
                operations,
                commit_message=f"hfadvisor Space: {wheel.name}, runs {', '.join(runs) or 'none'}",
                repo_type="space",
            )
        except HfHubHTTPError as e:
            status = e.response.status_code if e.response is not None else None
            if status in (401, 403):
                raise PublishError(
                    f"the Hub refused to write Space {repo_id} ({status}): use a token with write access "
                    "to that namespace (HF_TOKEN or --token)"
                ) from None
            raise PublishError(scrub(f"the Hub answered {status or 'an error'} for Space {repo_id}", token)) from None
        except OSError as e:
            raise PublishError(f"cannot reach the Hub to publish {repo_id} ({type(e).__name__})") from None
    return str(url)
