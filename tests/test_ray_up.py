"""`ray up` for real, as a user runs it, on two machines made on this host. The head: an SSH
server (Debian's openssh-server) on HEAD_IP, a fresh user with passwordless sudo (what a cloud
image's `ubuntu` user has) logging in with a generated key. The worker: the same user behind its
own sshd in a network namespace (WORKER_IP, a veth to the head, NAT to the package registries)
with its own PID, mount and host-name namespaces and its own disk for the home, so its `ray
stop` (every worker start begins with one) cannot touch the head. A copy of
`configs/cluster/local.yaml` with its CHANGE lines filled in points at both.

`ray up -y` syncs the tree and runs the real setup on the head (the project installed into
~/venv as the README says, PostgreSQL from Debian's packages by `head_postgres.sh`, without
systemd here) and starts Ray from the config's own command (head with no CPU); the head's
autoscaler then sets the worker up the same way and starts its Ray. Both machines boot from an
image with the project's dependencies baked into ~/venv (hard links to this test's own
environment), as a cluster's machine image would: their setup still runs the README's install,
which finds every dependency there and installs the project alone, in seconds. (The install
from nothing is .ci/run's own first step; a third one here cost 150 s of every CI run.) The
worker boots after the head's `ray up`. A search
submitted with `ray job submit` through `ray dashboard`'s port forward runs its trials on the
worker and writes its study to the head's PostgreSQL; `ray exec` reads the study back;
Chromium (Debian's, headless) opens the job's page on Ray's dashboard, token typed in as a user
does, and optuna-dashboard's page of the study, and finds the job and every trial there
(screenshots in the test's folder); a second `ray up` keeps the study, and the worker rejoins
the restarted head; `ray down` stops the head's Ray, and the worker's follows.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import optuna
import pytest
import yaml
from raynodes import submit_when_the_agent_is_up

import browser
from conftest import REPO, debian_postgres_host, free_ports
from tune_jobs.study.storage import open_storage

USER = "litesearch-node"
HEAD_IP, WORKER_IP = "10.213.0.1", "10.213.0.2"  # the private network the test makes
NETNS, VETH = "litesearch-w", "lsveth0"  # the worker's network namespace, the veth to it
WORKER_NAME = "litesearch-worker"  # the worker's host name (what trials record as `node`)
NAT_TABLE = "litesearch_rayup"  # nftables table of the worker's way out
PACKAGES = {"/usr/sbin/ip": "iproute2", "/usr/sbin/nft": "nftables",
            "/usr/sbin/sshd": "openssh-server",
            "/usr/bin/rsync": "rsync", "/usr/bin/sudo": "sudo",
            browser.CHROMIUM: "chromium", browser.CHROMEDRIVER: "chromium-driver"}
RAY = str(Path(sys.executable).with_name("ray"))

pytestmark = pytest.mark.slow


def _root_or_skip(need: str, sudo: bool = False) -> None:
    """Root for `need` (or, with `sudo`, passwordless sudo); CI runs as root, so there its
    absence fails the test instead of skipping it."""
    if os.geteuid() == 0 or (sudo and subprocess.run(["sudo", "-n", "true"],
                                                     capture_output=True).returncode == 0):
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI runs as root: the test {need}")
    pytest.skip(f"needs root{' or passwordless sudo' if sudo else ''}: the test {need}")


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


def _private_network() -> str:
    """The cluster's private network: a veth pair between this host (the head, HEAD_IP) and a
    network namespace (the worker, WORKER_IP), the head its default route. The worker reaches
    the package registries (its setup's pip install) through the head, masqueraded: a private
    subnet's NAT gateway. Returns the host's ip_forward setting, to restore."""
    _delete_private_network()  # a crashed earlier run
    net = HEAD_IP.rsplit(".", 1)[0]
    for command in (f"netns add {NETNS}", f"link add {VETH} type veth peer name {VETH}w",
                    f"link set {VETH}w netns {NETNS}", f"addr add {HEAD_IP}/24 dev {VETH}",
                    f"link set {VETH} up",
                    f"-n {NETNS} addr add {WORKER_IP}/24 dev {VETH}w",
                    f"-n {NETNS} link set {VETH}w up", f"-n {NETNS} link set lo up",
                    f"-n {NETNS} route add default via {HEAD_IP}"):
        done = subprocess.run(["ip", *command.split()], capture_output=True, text=True)
        assert done.returncode == 0, f"ip {command}: {done.stderr} (is {net}.0/24 in use?)"
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    before = forward.read_text().strip()
    forward.write_text("1")
    rules = "\n".join([f"table ip {NAT_TABLE} {{", "  chain postrouting {",
                       "    type nat hook postrouting priority srcnat; policy accept;",
                       f'    ip saddr {net}.0/24 oifname != "{VETH}" masquerade', "  }", "}", ""])
    done = subprocess.run(["nft", "-f", "-"], input=rules, capture_output=True, text=True)
    if done.returncode:
        _delete_private_network(before)
        raise AssertionError(f"nft: {done.stderr}")
    return before


def _delete_private_network(ip_forward: str | None = None) -> None:
    subprocess.run(["ip", "netns", "delete", NETNS], capture_output=True)  # takes the veth
    subprocess.run(["ip", "link", "delete", VETH], capture_output=True)
    subprocess.run(["nft", "delete", "table", "ip", NAT_TABLE], capture_output=True)
    if ip_forward is not None:
        Path("/proc/sys/net/ipv4/ip_forward").write_text(ip_forward)


def _sshd_config(folder: Path, listen: str, host_key: Path) -> Path:
    config = folder / f"sshd_{listen}.conf"
    config.write_text("\n".join([
        f"ListenAddress {listen}", "Port 22", f"HostKey {host_key}",
        f"PidFile {folder / f'sshd_{listen}.pid'}", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PubkeyAuthentication yes", "UsePAM no",
        f"AllowUsers {USER}", "MaxStartups 100", "MaxSessions 100", ""]))
    return config


def _home(home: Path, public_key: Path) -> None:
    """What a fresh machine's user has: an authorized key, and a .bashrc that keeps Ray's
    session files in the home (apart from any Ray this test process runs under /tmp/ray)."""
    (home / ".ssh").mkdir(mode=0o700)
    shutil.copy(public_key, home / ".ssh" / "authorized_keys")
    with open(home / ".bashrc", "a") as f:
        f.write(f"export TMPDIR={home}/tmp\n")
    (home / "tmp").mkdir()
    # pip as this host's user has it: the two machines are made on this host and install from
    # where it does (a local mirror of the registries, where one is configured). Without it
    # each node downloads torch's CUDA wheels (~3 GB) from PyPI and the test's time follows
    # the network: 300 s on one machine, 620 s in a CI run.
    for config in (Path.home() / ".config" / "pip" / "pip.conf", Path.home() / ".pip" / "pip.conf"):
        if config.is_file():
            (home / ".config" / "pip").mkdir(parents=True, exist_ok=True)
            shutil.copy(config, home / ".config" / "pip" / "pip.conf")
            break
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(home)], check=True)


def _image_venv(venv: Path) -> None:
    """The machine image's ~/venv: a venv made by the node's own python3, holding this test's
    installed packages (hard links: instant on one file system; the project itself left out,
    node.sh installs it) and their commands in bin/ (shebangs to this venv). What a cluster's
    image with the dependencies baked in has. Where it cannot be made (another Python minor
    version, another file system), no image: node.sh installs everything, ~150 s more."""
    python3 = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")  # the node user's
    ours = Path(sysconfig.get_paths()["purelib"])
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if python3 is None or Path(python3).resolve().name != version:
        return
    subprocess.run(["runuser", "-u", USER, "--", python3, "-m", "venv", "--without-pip",
                    str(venv)], check=True)
    site = venv / "lib" / version / "site-packages"
    # not the project, nor the bytecode cache of the top-level modules (which holds the
    # project's too: a node's reinstall deletes it, and these links keep this host's owner)
    entries = [p for p in ours.iterdir() if "litesearch" not in p.name
               and p.name != "__pycache__"]
    linked = subprocess.run(["cp", "-al", *map(str, entries), str(site)], capture_output=True)
    if linked.returncode:  # (EXDEV: another file system)
        shutil.rmtree(venv)
        return
    ours_bin, bin_dir = Path(sys.executable).parent, venv / "bin"
    for script in ours_bin.iterdir():
        if script.name.startswith(("python", "activate", "litesearch")) or not script.is_file():
            continue
        first, _, rest = script.read_bytes().partition(b"\n")
        if first.startswith(b"#!") and b"python" in first:  # a console script
            target = bin_dir / script.name
            target.write_bytes(b"#!" + str(bin_dir / "python3").encode() + b"\n" + rest)
            target.chmod(0o755)
            shutil.chown(target, USER, USER)


def test_head_postgres_script_makes_the_study_database_without_systemd(tmp_path) -> None:
    """The head's setup for real, on this machine's Debian PostgreSQL: no systemd here (a
    container), root without sudo; it must start the cluster with pg_ctlcluster, make the
    role and database, keep the password out of its output, and be safe to run twice.
    (In this file, before `machines`, which holds the host's PostgreSQL for `ray up`: one
    xdist worker runs both in turn, where two files had one wait on the other's lock for
    over two minutes.)"""
    _root_or_skip("sets up PostgreSQL", sudo=True)
    script = REPO / "configs" / "cluster" / "head_postgres.sh"
    env = {**os.environ, "HOME": str(tmp_path), "LITESEARCH_RESULTS": str(tmp_path / "res")}
    env.pop("LITESEARCH_DB_PASSWORD", None)
    with debian_postgres_host():
        first = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                               timeout=300)
        assert first.returncode == 0, first.stderr[-3000:]
        secrets = tmp_path / ".litesearch"
        assert (secrets / "env").stat().st_mode & 0o777 == 0o600
        password = (secrets / "db_password").read_text().strip()
        assert len(password) >= 16 and password not in first.stdout + first.stderr
        lines = dict(line.split("=", 1) for line in (secrets / "env").read_text().split())
        url = lines["LITESEARCH_STORAGE"]
        assert url.startswith("postgresql+psycopg2://litesearch:")
        assert url.endswith(":5432/litesearch")
        assert lines["LITESEARCH_RESULTS"] == str(tmp_path / "res")
        name = f"head-{uuid.uuid4().hex[:6]}"
        study = optuna.create_study(study_name=name, storage=open_storage(url))
        study.add_trial(optuna.trial.create_trial(value=1.0))
        again = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                               timeout=300)
        assert again.returncode == 0, again.stderr[-3000:]
        assert (secrets / "db_password").read_text().strip() == password  # kept, not rotated
        kept = optuna.load_study(study_name=name, storage=open_storage(url))
        assert [t.value for t in kept.get_trials()] == [1.0]


class Machines(NamedTuple):
    local: Path  # this host's HOME for `ray`: the SSH key and Ray's token
    node: Path  # the node user's home (the head's; the worker's is the same path)
    worker_disk: Path  # what the worker sees at `node`
    shared: Path  # the NFS share of trial results, one path on both
    env: dict
    start_worker: Callable[[], None]  # boots the worker machine (after the head's `ray up`)


@pytest.fixture(scope="module")
def machines(tmp_path_factory):
    """Two machines on one host. The head: `USER` (home in a temp folder, sudo without
    password, key-only login) behind sshd on HEAD_IP:22. The worker: the same user (a cluster's
    machines share their login), behind an sshd in its own network, PID, mount and host-name
    namespaces on WORKER_IP:22, its home the same path over its own disk (a bind mount), its
    own /dev/shm; so its `ray stop` sees only its processes. A folder both see at one path
    stands for the NFS share of trial results. The worker boots when the test calls
    `start_worker` (the autoscaler retries SSH until then)."""
    _root_or_skip("adds a user and starts sshd")
    _install_packages()
    root = tmp_path_factory.mktemp("rayup")
    local, sshd_dir = root / "local", root / "sshd"
    # The homes outside pytest's folders (mode 700: that user could not enter them).
    node = Path(tempfile.mkdtemp(prefix="litesearch-node-"))
    node.rmdir()  # useradd -m makes it
    worker_disk = Path(tempfile.mkdtemp(prefix="litesearch-worker-"))
    shared = Path(tempfile.mkdtemp(prefix="litesearch-shared-"))
    for folder in (local / ".ssh", sshd_dir):
        folder.mkdir(parents=True)
    subprocess.run(["userdel", "-r", USER], capture_output=True)  # a crashed earlier run
    subprocess.run(["useradd", "-m", "-d", str(node), "-s", "/bin/bash", USER], check=True)
    subprocess.run(["usermod", "-p", "*", USER], check=True)  # no password, but not locked
    sudoers = Path(f"/etc/sudoers.d/{USER}")
    sudoers.write_text(f"{USER} ALL=(ALL) NOPASSWD:ALL\n")
    sudoers.chmod(0o440)
    key, host_key = local / ".ssh" / "id_ed25519", sshd_dir / "host_key"
    for path in (key, host_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                       check=True)
    for home in (node, worker_disk):
        _home(home, key.with_suffix(".pub"))
    _image_venv(node / "venv")
    subprocess.run(["chown", f"{USER}:{USER}", str(shared)], check=True)
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
    ip_forward = _private_network()
    sshds: list[subprocess.Popen] = []

    def start_worker() -> None:
        """The worker machine, booted from the same image as the head: the head's ~/venv
        laid into the worker's disk with hard links (the same path on both machines, so its
        scripts' shebangs hold; instant on one file system), then its sshd. Its setup
        (node.sh) then runs `pip install -e` over a venv that has the dependencies, in
        seconds, instead of an install of the 6.7 GB CUDA torch (100-200 s)."""
        venv = node / "venv"
        if venv.is_dir():  # (cp -a keeps the owner; a second file system makes a full copy)
            subprocess.run(["cp", "-al", str(venv), str(worker_disk / "venv")], check=True)
        worker_sshd = (f"mount --bind {worker_disk} {node} && mount -t tmpfs tmpfs /dev/shm "
                       f"&& hostname {WORKER_NAME} && exec /usr/sbin/sshd -D -f "
                       f"{_sshd_config(sshd_dir, WORKER_IP, host_key)} "
                       f"-E {sshd_dir / 'worker.log'}")
        # --kill-child: when unshare goes, so does the namespace's first process, and with it
        # every process in there
        sshds.append(subprocess.Popen(
            ["ip", "netns", "exec", NETNS, "unshare", "--pid", "--fork", "--mount-proc",
             "--uts", "--kill-child", "sh", "-c", worker_sshd]))
        _wait_for_port(WORKER_IP, 22)

    host_postgres = contextlib.ExitStack()  # head_postgres.sh starts the host's cluster
    host_postgres.enter_context(debian_postgres_host())
    try:
        sshds.append(subprocess.Popen(["/usr/sbin/sshd", "-D", "-f",
                                       str(_sshd_config(sshd_dir, HEAD_IP, host_key)),
                                       "-E", str(sshd_dir / "head.log")]))
        env = {**os.environ, "HOME": str(local), "RAY_AUTH_MODE": "token"}
        subprocess.run([RAY, "get-auth-token", "--generate"], env=env, check=True,
                       capture_output=True)
        _wait_for_port(HEAD_IP, 22)
        yield Machines(local, node, worker_disk, shared, env, start_worker)
    finally:
        for sshd in sshds:  # (unshare ignores SIGTERM while it waits for its child)
            sshd.kill()
            sshd.wait(timeout=30)
        subprocess.run(["pkill", "-KILL", "-u", USER], capture_output=True)
        time.sleep(1)
        _delete_private_network(ip_forward)
        subprocess.run(["userdel", USER], capture_output=True)  # its home goes below
        _remove_in_background(node, worker_disk, shared)
        sudoers.unlink(missing_ok=True)
        host_postgres.close()  # stops it and lets another test have it


def _remove_in_background(*folders: Path) -> None:
    """Delete `folders` in a process of their own, the rest of the suite not waiting: they hold
    both nodes' virtual environments (~120,000 hard links), whose unlinking took 25 s of
    teardown on an ext4 mounted with `discard`. Renamed first, so that nothing finds them."""
    gone = []
    for folder in folders:
        if folder.exists():
            gone.append(folder.with_name(folder.name + "-deleted"))
            folder.rename(gone[-1])
    subprocess.Popen(["rm", "-rf", *map(str, gone)], stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)


def _cluster_config(local: Path, shared: Path, path: Path) -> Path:
    """configs/cluster/local.yaml with its CHANGE lines filled in for these two machines;
    everything else (file mounts, setup and start commands, a head with no CPU) as shipped."""
    config = yaml.safe_load((REPO / "configs" / "cluster" / "local.yaml").read_text())
    config["provider"].update(head_ip=HEAD_IP, worker_ips=[WORKER_IP])
    config["auth"] = {"ssh_user": USER, "ssh_private_key": str(local / ".ssh" / "id_ed25519")}
    config["head_setup_commands"] = [c.replace("/mnt/shared/litesearch", str(shared))
                                     for c in config["head_setup_commands"]]
    # The head "machine" is this host, which has other addresses too: Ray would pick the one
    # of the default route, not the private network's. And a free port for the head's
    # dashboard agent: Ray's default (52365) may be held by another Ray on this host (the
    # session's test cluster), and without its agent the head refuses jobs ("No available
    # agent to submit job"), seen in CI.
    config["head_start_ray_commands"] = [
        c.replace("--num-cpus=0", f"--num-cpus=0 --node-ip-address={HEAD_IP} "
                  f"--dashboard-agent-listen-port={free_ports()[0]}")
        for c in config["head_start_ray_commands"]]
    # The worker's raylet gives a lost head 15 s instead of Ray's 60 before it exits: the
    # local provider's `ray down` leaves the worker to that timeout, which the test waits out.
    config["worker_start_ray_commands"] = [f"RAY_gcs_rpc_server_reconnect_timeout_s=15 {c}"
                                           for c in config["worker_start_ray_commands"]]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _ray(env: dict, *args: str, timeout: float = 900,
         check: bool = True) -> subprocess.CompletedProcess:
    """`ray ARGS` from the repository root; its output also goes to $RAYUP_LOG_DIR (the test's
    folder by default), where a slow or failed step can be read while the test runs. With
    `check`, a non-zero exit fails the test with the output's tail."""
    log = Path(env["RAYUP_LOG_DIR"]) / f"ray-{args[0]}-{time.monotonic_ns()}.log"
    with open(log, "w") as out:
        done = subprocess.run([RAY, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=out, text=True, timeout=timeout)
        out.write(done.stdout)
    output = log.read_text()
    assert not check or done.returncode == 0, \
        f"ray {' '.join(args[:2])} failed ({log}):\n{output[-6000:]}"
    done.stderr = output
    return done


class Trial(NamedTuple):
    number: int
    state: str  # COMPLETE, PRUNED, ...
    name: str  # Tune's, as in its trial table: train_candidate_bf3ae99e
    node: str  # the host name it trained on


def _study_on_head(env: dict, config: Path, study: str) -> list[Trial]:
    """The study as the head's own shell sees it: `optuna trials` on $LITESEARCH_STORAGE."""
    done = _ray(env, "exec", str(config),
                f'optuna trials --study-name {study} --storage "$LITESEARCH_STORAGE" -f json',
                timeout=300)
    rows = next(line for line in done.stdout.splitlines() if line.startswith("["))
    trials = []
    for t in json.loads(rows):
        # trial_dir: .../train_candidate_bf3ae99e_1_<params>_<date>
        name = re.match(r"(\w+?_[0-9a-f]{8})_\d+_", Path(t["user_attrs"]["trial_dir"]).name)
        trials.append(Trial(t["number"], t["state"], name.group(1) if name else "",
                            t["user_attrs"].get("node", "")))
    return sorted(trials)


def _ray_processes() -> dict[str, int]:
    """USER's raylets on each machine: {"head": n, "worker": m} (the worker's are the ones in
    its network namespace)."""
    head_net = os.readlink("/proc/self/ns/net")
    found = {"head": 0, "worker": 0}
    pids = subprocess.run(["pgrep", "-u", USER, "-f", "raylet"], capture_output=True,
                          text=True).stdout.split()
    for pid in pids:
        with contextlib.suppress(OSError):
            found["head" if os.readlink(f"/proc/{pid}/ns/net") == head_net else "worker"] += 1
    return found


def _wait_for_the_worker(env: dict, config: Path, node: Path, seconds: float = 900) -> str:
    """The head's autoscaler sets the worker up after `ray up` returns (the same install), then
    starts its Ray: `ray status` on the head once it counts the worker's CPUs (the head has
    none), or the head's autoscaler log when that does not come."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _ray_processes()["worker"]:  # cheap: no SSH round trip until the raylet runs
            status = _ray(env, "exec", str(config), "ray status", timeout=120).stdout
            if f"{os.cpu_count()}.0 CPU" in status:
                return status
        time.sleep(3)
    logs = node / "tmp" / "ray" / "session_latest" / "logs"
    tail = "".join(p.read_text(errors="replace")[-4000:] for p in logs.glob("monitor.*"))
    raise AssertionError(f"the worker did not join {seconds} s after `ray up`; the head's "
                         f"autoscaler says:\n{tail}")


def _look_at_the_dashboards(env: dict, config: Path, dashboard: str, token: str, study: str,
                            trials: list[Trial], folder: Path) -> None:
    """What a user looks at in a browser: Ray's dashboard (through `ray dashboard`'s forward)
    on the finished job's page, and optuna-dashboard started on the head with `ray exec`.
    Screenshots in `folder`."""
    with browser.chromium(folder / "chromium-profile") as driver:
        browser.ray_job_page(driver, dashboard, study, token, "train_candidate_",
                             [t.name for t in trials], folder / "ray-job.png")
        # The README forwards optuna-dashboard's port with `ray exec ... --port-forward 8081`,
        # the same number at both ends; here the head is this host, where that forward could
        # only bind the port the dashboard holds: the page is read at the head's localhost.
        (port,) = free_ports()
        served = subprocess.Popen(
            [RAY, "exec", str(config), f"cd ~/litesearch && python tune_jobs/dashboard.py "
             f"--port {port}"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            _wait_for_port("127.0.0.1", port, seconds=120)
            browser.optuna_study_trials(
                driver, f"http://127.0.0.1:{port}", study,
                {t.number: t.state.capitalize() for t in trials}, folder)
        finally:
            os.killpg(served.pid, signal.SIGTERM)
            served.wait(timeout=30)
            subprocess.run(["pkill", "-u", USER, "-f", "tune_jobs/dashboard.py"])


@pytest.mark.timeout(2400)
def test_ray_up_worker_job_exec_dashboards_and_down(machines, tmp_path) -> None:
    local, node, worker_disk, shared, env, start_worker = machines
    env = {**env, "RAYUP_LOG_DIR": str(tmp_path)}
    config = _cluster_config(local, shared, tmp_path / "cluster.yaml")
    timings: dict[str, float] = {}
    study = f"rayup-{uuid.uuid4().hex[:8]}"  # the head's database outlives one test run

    start = time.monotonic()
    up = _ray(env, "up", "-y", "--no-config-cache", str(config))
    timings["first ray up"] = time.monotonic() - start
    assert "up-to-date" in up.stdout + up.stderr
    assert (node / "venv" / "bin" / "litesearch").exists()  # node.sh setup installed it
    # the head's autoscaler is trying to reach the worker, every 5 s, until it boots
    start_worker()
    secrets = node / ".litesearch"
    assert (secrets / "env").stat().st_mode & 0o777 == 0o600
    password = (secrets / "db_password").read_text().strip()

    # `ray exec ... 'ray status'` as typed (the login shell speaks token auth) counts the
    # worker's CPUs once it joined
    start = time.monotonic()
    _wait_for_the_worker(env, config, node)
    timings["worker joined after ray up"] = time.monotonic() - start
    assert (worker_disk / "venv" / "bin" / "ray").exists()  # its own venv, on its disk
    assert not (worker_disk / ".litesearch").exists()  # no database password on a worker

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
        job = submit_when_the_agent_is_up(lambda: _ray(
            job_env, "job", "submit", "--working-dir", ".", "--submission-id", study, "--",
            "python", "tune_jobs/search.py", "--config", "configs/ci.yaml", "--output",
            "runs/ci", "--study", study, check=False))
        assert job.returncode == 0, f"ray job submit failed:\n{job.stderr[-6000:]}"
        timings["search job"] = time.monotonic() - start
        assert "succeeded" in job.stdout + job.stderr
        assert "postgresql+psycopg2://litesearch:***@" in job.stdout  # the head's study, masked
        assert password not in job.stdout + job.stderr

        trials = _study_on_head(env, config, study)
        assert [t.number for t in trials] == list(range(6))
        assert {t.state for t in trials} <= {"COMPLETE", "PRUNED"}
        assert any(t.state == "COMPLETE" for t in trials)
        assert all(t.name.startswith("train_candidate_") for t in trials), trials
        assert {t.node for t in trials} == {WORKER_NAME}, trials  # none on the head
        assert any(shared.rglob("result.json"))  # trial results on the shared folder

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
    # the head's Ray restarted: the worker's raylet lost its head, and the new head's
    # autoscaler starts Ray on the worker again (its known node, nothing set up anew)
    start = time.monotonic()
    _wait_for_the_worker(env, config, node, seconds=300)
    timings["worker rejoined after the second ray up"] = time.monotonic() - start

    start = time.monotonic()
    _ray(env, "down", "-y", str(config), timeout=300)
    timings["ray down"] = time.monotonic() - start
    assert _ray_processes()["head"] == 0, "Ray still runs on the head after `ray down`"
    # The local provider's `ray down` stops Ray on the head only; the worker's raylet exits
    # once it has lost the head (its GCS reconnect timeout, 15 s here)
    deadline = time.monotonic() + 90
    while _ray_processes()["worker"] and time.monotonic() < deadline:
        time.sleep(2)
    timings["worker's Ray gone after ray down"] = time.monotonic() - start
    assert _ray_processes()["worker"] == 0, "Ray still runs on the worker after `ray down`"
    print("ray up round trip:", {k: round(v, 1) for k, v in timings.items()})
