"""`ray up` for real, as a user runs it: an SSH server (Debian's openssh-server) on a loopback
address stands for the head machine, a fresh user with passwordless sudo (what a cloud image's
`ubuntu` user has) logs in with a generated key, and a copy of `configs/cluster/local.yaml`
points at it. `ray up -y` syncs the tree, runs the real setup (the project installed into
~/venv as the README says, PostgreSQL from Debian's packages by `head_postgres.sh`, without
systemd here), starts Ray from the config's own start command; a search is submitted with
`ray job submit` through `ray dashboard`'s port forward and writes its study to the head's
PostgreSQL; `ray exec` reads the study back; Chromium (Debian's, headless) opens the job's page
on Ray's dashboard, token typed in as a user does, and optuna-dashboard's page of the study,
both served by the head, and finds the job and every trial there (screenshots in the test's
folder); a second `ray up` keeps the study; `ray down` stops the head's Ray.

The head here is given two CPUs for the trials (`local.yaml` gives it none: its trials go to
GPU workers). No worker node: a second "machine" on this host would share the head's process
table, and its `ray stop` (every worker start command begins with one) would stop the head.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

import browser
from conftest import REPO, free_ports

USER = "litesearch-node"
HEAD_IP = "127.0.0.2"  # Linux routes all of 127/8 to lo: a second address, no setup needed
PACKAGES = {"/usr/sbin/sshd": "openssh-server", "/usr/bin/rsync": "rsync", "/usr/bin/sudo": "sudo",
            browser.CHROMIUM: "chromium", browser.CHROMEDRIVER: "chromium-driver"}
RAY = str(Path(sys.executable).with_name("ray"))

pytestmark = pytest.mark.slow


def _root_or_skip() -> None:
    if os.geteuid() == 0:
        return
    if os.environ.get("CI"):
        pytest.fail("CI runs as root: the test adds a user and an SSH server")
    pytest.skip("needs root (adds a user and starts sshd)")


def _install_packages() -> None:
    """What the head needs from Debian before `ray up` can reach it (a real machine has them)."""
    missing = [pkg for path, pkg in PACKAGES.items() if not Path(path).exists()]
    if not missing:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=300)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env,
                   timeout=600, stdout=subprocess.DEVNULL)


def _wait_for_port(host: str, port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {host}:{port} after {seconds} s")


@pytest.fixture(scope="module")
def head_machine(tmp_path_factory):
    """The head: `USER` (home in a temp folder, sudo without password, key-only login) behind
    sshd on HEAD_IP:22. Yields (local HOME with the key and Ray token, node HOME)."""
    _root_or_skip()
    with socket.socket() as s:
        if s.connect_ex((HEAD_IP, 22)) == 0:
            pytest.fail(f"{HEAD_IP}:22 is taken: stop the SSH server listening there")
    _install_packages()
    root = tmp_path_factory.mktemp("rayup")
    local, sshd_dir = root / "local", root / "sshd"
    # The node's home outside pytest's folders (mode 700: that user could not enter them).
    node = Path(tempfile.mkdtemp(prefix="litesearch-node-"))
    node.rmdir()  # useradd -m makes it
    for folder in (local / ".ssh", sshd_dir):
        folder.mkdir(parents=True)
    subprocess.run(["userdel", "-r", USER], capture_output=True)  # a crashed earlier run
    subprocess.run(["useradd", "-m", "-d", str(node), "-s", "/bin/bash", USER], check=True)
    subprocess.run(["usermod", "-p", "*", USER], check=True)  # no password, but not locked
    sudoers = Path(f"/etc/sudoers.d/{USER}")
    sudoers.write_text(f"{USER} ALL=(ALL) NOPASSWD:ALL\n")
    sudoers.chmod(0o440)
    key = local / ".ssh" / "id_ed25519"
    for path in (key, sshd_dir / "host_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                       check=True)
    (node / ".ssh").mkdir(mode=0o700)
    shutil.copy(key.with_suffix(".pub"), node / ".ssh" / "authorized_keys")
    # The machine's own environment, not litesearch's: its Ray keeps its session files in the
    # user's home, apart from any Ray this test process runs under /tmp/ray.
    with open(node / ".bashrc", "a") as f:
        f.write(f"export TMPDIR={node}/tmp\n")
    (node / "tmp").mkdir()
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(node)], check=True)
    config = sshd_dir / "sshd_config"
    config.write_text("\n".join([
        f"ListenAddress {HEAD_IP}", "Port 22", f"HostKey {sshd_dir / 'host_key'}",
        f"PidFile {sshd_dir / 'sshd.pid'}", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PubkeyAuthentication yes", "UsePAM no",
        f"AllowUsers {USER}", "MaxStartups 100", "MaxSessions 100", ""]))
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
    sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", str(config), "-E",
                             str(sshd_dir / "log")])
    env = {**os.environ, "HOME": str(local), "RAY_AUTH_MODE": "token"}
    subprocess.run([RAY, "get-auth-token", "--generate"], env=env, check=True,
                   capture_output=True)
    try:
        _wait_for_port(HEAD_IP, 22)
        yield local, node, env
    finally:
        sshd.send_signal(signal.SIGTERM)
        sshd.wait(timeout=30)
        subprocess.run(["pkill", "-KILL", "-u", USER], capture_output=True)
        time.sleep(1)
        subprocess.run(["userdel", "-r", USER], capture_output=True)
        shutil.rmtree(node, ignore_errors=True)
        sudoers.unlink(missing_ok=True)
        for version in sorted(p.name for p in Path("/etc/postgresql").glob("*")):
            subprocess.run(["pg_ctlcluster", version, "main", "stop"], capture_output=True,
                           timeout=60)


def _cluster_config(local: Path, path: Path) -> Path:
    """configs/cluster/local.yaml with its CHANGE lines filled in for this host; everything
    else (file mounts, setup and start commands) as shipped."""
    config = yaml.safe_load((REPO / "configs" / "cluster" / "local.yaml").read_text())
    config["provider"].update(head_ip=HEAD_IP, worker_ips=[])
    config["auth"] = {"ssh_user": USER, "ssh_private_key": str(local / ".ssh" / "id_ed25519")}
    config["head_setup_commands"] = [
        c.replace("/mnt/shared/litesearch", "~/litesearch-results")
        for c in config["head_setup_commands"]]
    # Two CPUs for the trials (the shipped head has none: trials go to GPU workers), and a free
    # port for the head's dashboard agent: Ray's default (52365) may be held by another Ray on
    # this machine (the session's test cluster), and without its agent the head refuses jobs
    # ("No available agent to submit job"), seen in CI.
    config["head_start_ray_commands"] = [
        c.replace("--num-cpus=0", f"--num-cpus=2 --dashboard-agent-listen-port={free_ports()[0]}")
        for c in config["head_start_ray_commands"]]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _ray(env: dict, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """`ray ARGS` from the repository root; its output also goes to $RAYUP_LOG_DIR (the test's
    folder by default), where a slow or failed step can be read while the test runs."""
    log = Path(env["RAYUP_LOG_DIR"]) / f"ray-{args[0]}-{time.monotonic_ns()}.log"
    with open(log, "w") as out:
        done = subprocess.run([RAY, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=out, text=True, timeout=timeout)
        out.write(done.stdout)
    output = log.read_text()
    assert done.returncode == 0, f"ray {' '.join(args[:2])} failed ({log}):\n{output[-6000:]}"
    done.stderr = output
    return done


def _submit_when_the_agent_is_up(env: dict, *args: str) -> subprocess.CompletedProcess:
    """`ray job submit ARGS`. Right after `ray up` the head's job agent may still be starting:
    Ray answers 500 "No available agent to submit job, please try again later", and a user
    tries again; so does this, for up to a minute."""
    for attempt in range(12):
        try:
            return _ray(env, "job", "submit", *args, timeout=900)
        except AssertionError as err:
            if "No available agent" not in str(err) or attempt == 11:
                raise
            time.sleep(5)
    raise AssertionError("unreachable")


def _study_on_head(env: dict, config: Path, study: str) -> list[tuple[int, str, str]]:
    """The study as the head's own shell sees it: `optuna trials` on $LITESEARCH_STORAGE.
    Each trial as (number, state, Tune's trial name, as in the trial table)."""
    done = _ray(env, "exec", str(config),
                f'optuna trials --study-name {study} --storage "$LITESEARCH_STORAGE" -f json',
                timeout=300)
    rows = next(line for line in done.stdout.splitlines() if line.startswith("["))
    trials = []
    for t in json.loads(rows):
        # trial_dir: .../train_candidate_bf3ae99e_1_<params>_<date>; the table says
        # train_candidate_bf3ae99e
        name = re.match(r"(\w+?_[0-9a-f]{8})_\d+_", Path(t["user_attrs"]["trial_dir"]).name)
        trials.append((t["number"], t["state"], name.group(1) if name else ""))
    return sorted(trials)


def _look_at_the_dashboards(env: dict, config: Path, dashboard: str, token: str, study: str,
                            trials: list[tuple[int, str, str]], folder: Path) -> None:
    """What a user looks at in a browser: Ray's dashboard (through `ray dashboard`'s forward)
    on the finished job's page, and optuna-dashboard started on the head with `ray exec`.
    Screenshots in `folder`."""
    with browser.chromium(folder / "chromium-profile") as driver:
        browser.ray_job_page(driver, dashboard, study, token, "train_candidate_",
                             [name for _, _, name in trials], folder / "ray-job.png")
        # The README forwards optuna-dashboard's port with `ray exec ... --port-forward 8081`,
        # the same number at both ends; here the "head" is this host, where that forward
        # could only bind the port the dashboard holds: the page is read at the head's
        # localhost directly.
        (port,) = free_ports()
        served = subprocess.Popen(
            [RAY, "exec", str(config), f"cd ~/litesearch && python tune_jobs/dashboard.py "
             f"--port {port}"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            _wait_for_port("127.0.0.1", port, seconds=120)
            browser.optuna_study_trials(
                driver, f"http://127.0.0.1:{port}", study,
                {number: state.capitalize() for number, state, _ in trials}, folder)
        finally:
            os.killpg(served.pid, signal.SIGTERM)
            served.wait(timeout=30)
            subprocess.run(["pkill", "-u", USER, "-f", "tune_jobs/dashboard.py"])


@pytest.mark.timeout(1800)
def test_ray_up_job_exec_dashboard_and_down(head_machine, tmp_path) -> None:
    local, node, env = head_machine
    env = {**env, "RAYUP_LOG_DIR": str(tmp_path)}
    config = _cluster_config(local, tmp_path / "cluster.yaml")
    timings: dict[str, float] = {}
    study = f"rayup-{uuid.uuid4().hex[:8]}"  # the head's database outlives one test run

    start = time.monotonic()
    up = _ray(env, "up", "-y", "--no-config-cache", str(config))
    timings["first ray up"] = time.monotonic() - start
    assert "up-to-date" in up.stdout + up.stderr
    assert (node / "venv" / "bin" / "ray").exists()  # node.sh setup: the README's install
    secrets = node / ".litesearch"
    assert (secrets / "env").stat().st_mode & 0o777 == 0o600
    password = (secrets / "db_password").read_text().strip()

    status = _ray(env, "exec", str(config), "ray status", timeout=120)
    assert "2.0 CPU" in status.stdout  # the login shell speaks token auth, as typed

    (port,) = free_ports()
    forward = subprocess.Popen([RAY, "dashboard", str(config), "--port", str(port)],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_port("127.0.0.1", port)
        token = (local / ".ray" / "auth_token").read_text().strip()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/version",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert json.load(answer)["ray_version"]

        start = time.monotonic()
        job_env = {**env, "RAY_ADDRESS": f"http://127.0.0.1:{port}"}
        job = _submit_when_the_agent_is_up(
            job_env, "--working-dir", ".", "--submission-id", study, "--", "python",
            "tune_jobs/search.py", "--config", "configs/ci.yaml", "--output", "runs/ci",
            "--study", study)
        timings["search job"] = time.monotonic() - start
        assert "succeeded" in job.stdout + job.stderr
        assert "postgresql+psycopg2://litesearch:***@" in job.stdout  # the head's study, masked
        assert password not in job.stdout + job.stderr

        trials = _study_on_head(env, config, study)
        assert [n for n, _, _ in trials] == list(range(6))
        assert {state for _, state, _ in trials} <= {"COMPLETE", "PRUNED"}
        assert any(state == "COMPLETE" for _, state, _ in trials)
        assert all(name.startswith("train_candidate_") for _, _, name in trials), trials

        start = time.monotonic()
        _look_at_the_dashboards(env, config, f"http://127.0.0.1:{port}", token, study, trials,
                                tmp_path)
        timings["browser"] = time.monotonic() - start
    finally:
        os.killpg(forward.pid, signal.SIGTERM)
        forward.wait(timeout=30)

    # start-head put litesearch's dashboard beside Ray's, which Ray's grafana.ini provisions
    grafana = node / "tmp" / "ray" / "session_latest" / "metrics" / "grafana"
    assert (grafana / "dashboards" / "litesearch_grafana_dashboard.json").is_file()
    assert (grafana / "grafana.ini").is_file()

    start = time.monotonic()
    again = _ray(env, "up", "-y", str(config))
    timings["second ray up"] = time.monotonic() - start
    assert "Running setup commands" not in again.stdout + again.stderr  # nothing to redo
    assert _study_on_head(env, config, study) == trials
    assert (secrets / "db_password").read_text().strip() == password

    start = time.monotonic()
    _ray(env, "down", "-y", str(config), timeout=300)
    timings["ray down"] = time.monotonic() - start
    left = subprocess.run(["pgrep", "-u", USER, "-f", "raylet|gcs_server"],
                          capture_output=True, text=True)
    assert left.stdout == "", f"Ray processes left after `ray down`: {left.stdout}"
    print("ray up round trip:", {k: round(v, 1) for k, v in timings.items()})
