"""Ray nodes a test starts as a user types them: `ray start ... --block`, one process (and its
own process group) per node, so that stopping it stops that node only, never `ray stop`,
which would stop every Ray on the machine (the session's own test cluster among them). The
one stop rule for every such cluster is `RayNodes.stop`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
GRACE_S = 10  # `ray start --block` stops its processes one by one: 30 s and more seen


class RayNodes:
    """The nodes of one throw-away cluster whose GCS listens on `gcs_port`; each node's
    output goes to FOLDER/<name>.log."""

    def __init__(self, folder: Path, env: dict[str, str], gcs_port: int) -> None:
        self.folder, self.env, self.gcs_port = folder, env, gcs_port
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        with open(self.folder / f"{name}.log", "w") as log:  # the child keeps its own handle
            self.procs[name] = subprocess.Popen(
                [RAY, "start", "--block", "--disable-usage-stats", *args], env=self.env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self.procs[name]

    def check_running(self) -> None:
        """Raise, with the nodes' logs, when a `ray start` has exited."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"`ray start` of {name} exited ({proc.returncode}):\n"
                                   f"{self.logs()}")

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-tail:]}"
                         for p in sorted(self.folder.glob("*.log")))

    def stop(self) -> None:
        """Workers first, then the head (the order they started in, reversed): SIGTERM to
        each node's process group, SIGKILL after GRACE_S (nothing of a throw-away cluster
        needs keeping); then every process still naming this cluster's GCS port."""
        for proc in reversed(list(self.procs.values())):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        kill_processes_of(self.gcs_port)


def kill_processes_of(port: int) -> None:
    """Every process of a cluster: their command lines name its GCS port (/proc, Linux)."""
    marks = (f":{port}".encode(), f"={port}".encode())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        if any(m in cmdline for m in marks):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


def submit_when_the_agent_is_up(submit: Callable[[], subprocess.CompletedProcess],
                                tries: int = 12, wait_s: float = 5) -> subprocess.CompletedProcess:
    """Run `submit` (a `ray job submit`) again while Ray answers 500 "No available agent to
    submit job, please try again later": right after a head starts its job agent may still be
    registering (the dashboard waits only 10 s for it, seen exceeded under load), and a user
    tries again; so does this, for up to a minute. Any other outcome is returned as it is."""
    for _ in range(tries - 1):
        done = submit()
        if done.returncode == 0 or "No available agent" not in done.stdout + done.stderr:
            return done
        time.sleep(wait_s)
    return submit()
