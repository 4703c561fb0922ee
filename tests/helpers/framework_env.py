"""Python snippets run under a framework's own environment, the real library imported as a run imports it.

The real framework libraries live in the per-framework environments (``.envs/<name>-<version>``, built on
first use like a real run builds them), not in the harness's own interpreter, so a check runs a snippet under
that environment's python with ``PYTHONPATH`` at the repository root and reads one JSON line back.

Starting that interpreter and importing the library (llamafactory, trl, swift) costs about 5 s on two cores
(axolotl about 11 s);
the snippet itself milliseconds. So the snippets that many tests need are declared as :class:`Probes` (a name,
a job and a body each) and run together: one interpreter per framework per test session imports the library
once, then forks a child per probe. Each probe thus starts from the state of a fresh interpreter that has just
imported the library (a probe that changes the library's globals, as LLaMA-Factory's template registry is
changed by ``get_template_and_fix_tokenizer``, cannot leak into the next), and a failure, even a crash, stays
its own probe's: the test reading it fails with the traceback.
"""
from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any, Callable, Mapping

import pytest

from tests.helpers.once_per_run import once_per_run

REPO = Path(__file__).resolve().parents[2]
TRL = ("trl", "1.16.0")
LLAMAFACTORY = ("llamafactory", "0.9.5")
SWIFT = ("swift", "4.6.0")
AXOLOTL = ("axolotl", "0.19.0")
MARK = "AUDIT_RESULT="
Framework = tuple[str, str]
Snippet = tuple[dict, str]  # (job, body): the body sees ``job`` (and ``json``, ``sys``) and must set ``result``

# Run once before any snippet in the LLaMA-Factory env: torchaudio is imported at module level by
# llamafactory.data (see envs/README.md); the adapter's own stub is used when it exists.
_LF_PRELUDE = """
import os
os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
import harness.frameworks.llamafactory as lf_adapter
if hasattr(lf_adapter, "_stub_missing_torchaudio"):
    lf_adapter._stub_missing_torchaudio()
"""

# axolotl: telemetry off and the Hub offline before anything imports huggingface_hub (it reads HF_HUB_OFFLINE
# once, at import), as the snippets set them before their own imports.
_AXOLOTL_PRELUDE = """
import os
os.environ["AXOLOTL_DO_NOT_TRACK"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
"""
_PRELUDE = {"llamafactory": _LF_PRELUDE, "axolotl": _AXOLOTL_PRELUDE}

# What each environment imports once, before forking its probes (what their snippets import anyway).
_WARM = {
    "llamafactory": "from llamafactory.hparams import get_train_args\nimport llamafactory.data\n",
    "trl": "from trl import SFTConfig\n",
    "swift": "from swift.arguments import SftArguments\n",
    "axolotl": "from axolotl.cli.config import load_cfg\nfrom axolotl.common.datasets import load_datasets\n"
               "from axolotl.train import setup_model_and_trainer\nimport harness.frameworks.axolotl.plugin\n",
}

# Reads the snippets ({name: [job, body]}) from stdin and runs each in a forked child of its own, in a fresh
# namespace; the child sends back its result or its traceback through a pipe.
_RUNNER = """
import json, os, sys, traceback
_snippets = json.loads(sys.stdin.read())
_outcomes = {}


def _outcome(name, job, body):
    try:
        scope = {"__name__": "__snippet__", "json": json, "sys": sys, "job": job}
        exec(compile(body, f"<snippet {name}>", "exec"), scope)
        return json.dumps({"result": scope["result"]}, default=str)
    except BaseException:  # noqa: BLE001  (SystemExit included: the child must reach os._exit)
        return json.dumps({"error": traceback.format_exc()})


for _name, (_job, _body) in _snippets.items():
    sys.stdout.flush()
    sys.stderr.flush()
    _read, _write = os.pipe()
    _pid = os.fork()
    if _pid == 0:
        os.close(_read)
        with os.fdopen(_write, "w") as _pipe:
            _pipe.write(_outcome(_name, _job, _body))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    os.close(_write)
    with os.fdopen(_read) as _pipe:
        _sent = _pipe.read()  # before waiting: a large result must not block the child on a full pipe
    _code = os.waitstatus_to_exitcode(os.waitpid(_pid, 0)[1])
    _how = f"killed by signal {-_code}" if _code < 0 else f"exit code {_code}"
    _outcomes[_name] = json.loads(_sent) if _sent else {
        "error": f"the probe's process ended without a result ({_how}; the interpreter's output follows)"}
print(MARK + json.dumps(_outcomes))
import gc
gc.freeze()  # as harness/worker/__main__.py: no collection of the library's objects at exit (about 1 s)
"""


def env_python(name: str, version: str) -> str:
    """The framework's own interpreter, built on first use (harness/launch/venv_build.py) like a real run does."""
    from harness.launch.venv_build import build_env
    from harness.launch.venvs import EnvError
    from harness.launch.venvs import env_python as python_of

    try:
        return str(python_of(build_env(name, version)))
    except EnvError as err:  # e.g. no package index reachable and no wheelhouse
        pytest.skip(f"{name} {version} environment cannot be built here: {err}")


class Outcomes(Mapping[str, Any]):
    """Each snippet's ``result``; reading one whose body raised fails the reading test with its traceback.
    ``jobs``: the job each snippet was given; ``output``: the tail of the interpreter's stdout and stderr."""

    def __init__(self, python: str, outcomes: dict[str, dict], jobs: dict[str, dict], output: str = "") -> None:
        self.python, self._outcomes, self.jobs, self.output = python, outcomes, jobs, output

    def __getitem__(self, name: str) -> Any:
        outcome = self._outcomes[name]
        if "error" in outcome:
            raise AssertionError(f"snippet {name!r} failed under {self.python}:\n{outcome['error']}\n"
                                 f"--- output of the interpreter (all its snippets) ---\n{self.output}")
        return outcome["result"]

    def __iter__(self):
        return iter(self._outcomes)

    def to_dict(self) -> dict[str, Any]:
        return {"python": self.python, "outcomes": self._outcomes, "jobs": self.jobs, "output": self.output}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Outcomes":
        return cls(data["python"], data["outcomes"], data["jobs"], data.get("output", ""))

    def __len__(self) -> int:
        return len(self._outcomes)


def run_snippets(framework: Framework, snippets: Mapping[str, Snippet], timeout: int = 300) -> Outcomes:
    """Run every snippet under the framework env's python: one interpreter, a forked child per snippet."""
    python = env_python(*framework)
    prelude = _PRELUDE.get(framework[0], "")
    code = prelude + _WARM.get(framework[0], "") + f"MARK = {MARK!r}\n" + _RUNNER
    payload = {name: [job, textwrap.dedent(body)] for name, (job, body) in snippets.items()}
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([python, "-c", code], input=json.dumps(payload), capture_output=True, text=True,
                          cwd=str(REPO), env=env, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    assert proc.returncode == 0 and lines, (f"snippets {sorted(snippets)} failed under {python}:\n"
                                            f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return Outcomes(python, json.loads(lines[-1][len(MARK):]), {name: job for name, (job, _) in snippets.items()},
                    output="\n".join(line for line in proc.stdout.splitlines() if not line.startswith(MARK))[-3000:]
                    + "\n" + proc.stderr[-5000:])


def run_in_env(framework: Framework, job: dict, body: str, timeout: int = 300) -> Any:
    """Run one snippet in an interpreter of its own (for a check too slow or too rare to batch)."""
    return run_snippets(framework, {"snippet": (job, body)}, timeout)["snippet"]


JobFactory = Callable[[Path], dict]  # given a scratch folder of its own (for data files), the probe's job


class Probes:
    """The probes of one framework environment that tests declare at import time (``add``) and read through a
    session fixture (``run``): all of them in one interpreter, whichever test module declared them."""

    def __init__(self, framework: Framework) -> None:
        self.framework = framework
        self._declared: dict[str, tuple[JobFactory, str]] = {}

    def add(self, name: str, body: str, job: JobFactory) -> str:
        earlier = self._declared.get(name)
        # A test module imported twice (collected as a test file, and as tests.audit.X by another module, since
        # tests/audit is no package) declares its probes twice: the same body under the same name is one probe.
        assert earlier is None or earlier[1] == body, f"two probes named {name!r} in {self.framework}"
        self._declared.setdefault(name, (job, body))
        return name

    def run(self, scratch: Callable[[str], Path], timeout_per_probe: int = 60) -> Outcomes:
        snippets = {name: (job(scratch(name)), body) for name, (job, body) in self._declared.items()}
        return run_snippets(self.framework, snippets, timeout=120 + timeout_per_probe * len(snippets))

    def run_once(self, tmp_path_factory: Any, timeout_per_probe: int = 60) -> Outcomes:
        """:meth:`run`, once per test run whatever the number of xdist workers (tests/helpers/once_per_run.py)."""
        name = "probes-" + "-".join(self.framework)
        return Outcomes.from_dict(once_per_run(
            tmp_path_factory, name, lambda: self.run(tmp_path_factory.mktemp, timeout_per_probe).to_dict()))


PROBES = {framework: Probes(framework) for framework in (TRL, LLAMAFACTORY, SWIFT, AXOLOTL)}
