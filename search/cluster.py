"""Starting or joining Ray: the cluster probe, token authentication and the driver's start.

The one module of the project that uses Ray's private APIs (``ray._raylet``): a Ray upgrade that
moves them is fixed here alone. Everything a user can get wrong (an unreachable head, a missing or
refused token, a cluster without the resources of one trial) fails with one line before, or
instead of, ``ray.init``'s minutes of retries.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
from pathlib import Path

from ae_lightning import quiet as verbosity
from ae_lightning.errors import UserError


def probe(address: str, timeout_s: float = 10.0) -> None:
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address}: expected HOST:PORT of `ray start --head` (port 6379 by default) or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise UserError(f"--address {address}: cannot reach a Ray head there ({e.strerror or e}); "
                        "start one with `ray start --head` or check host and port") from None


TOKEN_HELP = ("copy the head's token to this machine: `ray get-auth-token` on the head prints it; put it in "
              "~/.ray/auth_token here, or set RAY_AUTH_TOKEN=<token> or RAY_AUTH_TOKEN_PATH=<file> (docs/search.md)")


def _token_source() -> str | None:
    """Where Ray reads this machine's authentication token, in Ray's own order of precedence
    (RAY_AUTH_TOKEN, then the file RAY_AUTH_TOKEN_PATH names, then ~/.ray/auth_token), or None.
    A RAY_AUTH_TOKEN_PATH naming no token is refused here: Ray itself aborts the process on it."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        try:
            token = Path(path).expanduser().read_text().strip()
        except (OSError, UnicodeDecodeError):
            token = ""
        if not token:
            raise UserError(f"RAY_AUTH_TOKEN_PATH={path}: no token in that file (missing, unreadable or empty); "
                            + TOKEN_HELP)
        return f"RAY_AUTH_TOKEN_PATH={path}"
    try:
        default = Path.home() / ".ray" / "auth_token"
        if default.is_file() and default.read_text().strip():
            return str(default)
    except (OSError, RuntimeError, UnicodeDecodeError):  # no home folder, unreadable file
        pass
    return None


def _enable_token_auth(source: str | None) -> None:
    """Ray 2.60's ``ray start --head`` turns token authentication on whenever a token exists
    (~/.ray/auth_token, which any local ``ray.init()`` creates), but ``ray.init(address=HOST:PORT)``
    never does (only ``address="auto"`` does): the driver then sends no token and the head refuses
    it. So, as "auto" does: with RAY_AUTH_MODE unset and a token on this machine, this driver uses
    token mode. A head without authentication accepts such a driver too. An explicit RAY_AUTH_MODE
    (``disabled``, ``token``) is left as it is."""
    if os.environ.get("RAY_AUTH_MODE") is not None or source is None:
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    try:
        from ray._raylet import Config

        Config.initialize("")  # what Ray's own auto-enable does: re-read RAY_AUTH_MODE
    except ImportError:  # a Ray without token authentication
        pass


def _check_auth(address: str, source: str | None, timeout_s: float = 15.0) -> None:
    """One short GCS request: a refused token fails here, at once and in one line, instead of
    after ray.init's 20 s of retries (whose message does not say why)."""
    mode = os.environ.get("RAY_AUTH_MODE", "").lower()
    if mode == "token" and source is None:  # Ray's C++ side would abort the process
        raise UserError(f"--address {address}: RAY_AUTH_MODE=token is set but this machine has no token: {TOKEN_HELP}")
    if "://" in address:  # ray:// (Ray Client) is not the GCS port
        return
    try:
        from ray._raylet import GcsClient
        from ray.exceptions import AuthenticationError
    except ImportError:  # a Ray without token authentication
        return
    outcome: list[str] = []

    def ask() -> None:
        try:
            GcsClient(address=address)
            outcome.append("ok")
        except AuthenticationError:
            outcome.append("refused")
        except Exception:  # anything else: ray.init reports it
            outcome.append("other")

    asking = threading.Thread(target=ask, daemon=True)
    with _quiet_fd2():  # Ray's C++ client logs each attempt on stderr
        asking.start()
        asking.join(timeout_s)
    if not outcome:
        raise UserError(f"--address {address}: no Ray head answered there within {timeout_s:g} s (a port that "
                        "accepts connections but is not the GCS port of `ray start --head`, 6379 by default?)")
    if outcome[0] == "refused":
        if mode == "disabled":
            why = "RAY_AUTH_MODE=disabled is set here, but the cluster uses token authentication: unset it and "
        elif source is None:
            why = "the cluster uses token authentication and this machine has no token: "
        else:
            why = f"the cluster uses token authentication and refused the token from {source} (not the cluster's): "
        raise UserError(f"--address {address}: {why}{TOKEN_HELP}")


@contextlib.contextmanager
def _quiet_fd2():
    """Standard error (file descriptor 2, where C++ code writes) to /dev/null for a moment."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


TOKEN_SETUP_LOGGER = "ray._private.authentication.authentication_token_setup"


def _drop_token_enabled_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


def quiet_notices() -> None:
    """At the default verbosity, Ray's notice that a token on this machine turned authentication on
    is dropped (its warning that authentication is off still shows); --verbose keeps both."""
    log = logging.getLogger(TOKEN_SETUP_LOGGER)
    if verbosity.verbose():
        log.removeFilter(_drop_token_enabled_notice)
    else:
        log.addFilter(_drop_token_enabled_notice)


def start(address: str | None, num_cpus: int | None, quiet: bool, cpus_per_trial: float,
          gpus_per_trial: float) -> None:
    """Start a local Ray, or join the cluster at ``address`` (checked first: reachable, token
    accepted, enough CPUs and GPUs for one trial), each failure one line."""
    import ray
    from ray.exceptions import RayError

    kw = dict(include_dashboard=False, configure_logging=False, log_to_driver=not quiet)
    quiet_notices()
    source = _token_source()
    if address and address != "auto":  # Ray would retry an unreachable head for minutes
        probe(address)
        _enable_token_auth(source)
        _check_auth(address, source)
    try:
        if address:
            ray.init(address=address, **kw)  # the nodes have the project installed (README)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count(), **kw)
            reap_with_driver()
    except (ConnectionError, RuntimeError, ValueError, RayError) as e:
        raise UserError(f"cannot start or join Ray ({'--address ' + address if address else 'local'}): "
                        f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
    if address:
        have = ray.cluster_resources()
        for res, want in (("GPU", gpus_per_trial), ("CPU", cpus_per_trial)):
            if want > 0 and have.get(res, 0) < want:
                ray.shutdown()
                raise UserError(f"the Ray cluster at {address} has {have.get(res, 0):g} {res}s; "
                                f"a trial asks for {want:g}")


_WATCHDOG = r"""
import os, signal, sys, time
driver, session = int(sys.argv[1]), sys.argv[2].encode()

def members():
    # the session's processes by command line, and their children: a worker renames itself
    # (ray::ImplicitFunc.train) and, in a process group of its own, outlives a killed raylet by seconds
    out, parent = set(), {}
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if session in f.read():
                        out.add(int(pid))
                with open(f"/proc/{pid}/stat", "rb") as f:
                    parent[int(pid)] = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return out | {pid for pid, ppid in parent.items() if ppid in out}

tick = 0
while True:
    try:
        os.kill(driver, 0)
    except ProcessLookupError:
        break
    time.sleep(0.5)
    tick += 1
    if tick % 10 == 0 and not members():  # ray.shutdown() ended the session: nothing to watch
        sys.exit(0)
for pid in members():
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
"""


def reap_with_driver() -> None:
    """A local Ray's processes (GCS, raylet, dashboard and runtime-env agents, workers) end with
    this driver however it ends: a watchdog process, in a session of its own, waits for the driver
    and then kills every process of its Ray session (named by the session's folder in their
    command lines). After ``ray.shutdown()`` it finds none. Without it, a driver killed with
    ``kill -9`` left them running for over a minute. Linux (/proc) only; a joined cluster's
    processes are the cluster's, not the sweep's, and are left alone."""
    import subprocess

    import ray

    if not Path("/proc/self/cmdline").is_file():
        return
    session = Path(ray._private.worker._global_node.get_session_dir_path()).name  # Ray's private API
    subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), session], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)


# Tune's experiment snapshot, one set of files per driver session (``<prefix><session><suffix>``).
# With a local storage path Tune copies its staged snapshot over these files without a rename, so a
# kill mid-copy can leave the newest session's files cut short (Tune's restore then fails with a
# traceback). Each is read as it is written: the trials' state and AxSearch's state as JSON; Ray's
# own searcher states (basic-variant-state-*.json and search_gen_state-*.json included) with cloudpickle.
_SNAPSHOT_FILES = (("experiment_state-", ".json"), ("basic-variant-state-", ".json"),
                   ("search_gen_state-", ".json"), ("searcher-state-", ".json"))
_JSON_FILES = ("experiment_state-", "searcher-state-")


def _readable(path: Path) -> bool:
    """A snapshot file read as Tune reads it."""
    import json

    import ray.cloudpickle as cloudpickle

    try:
        data = path.read_bytes()
        json.loads(data) if path.name.startswith(_JSON_FILES) else cloudpickle.loads(data)
        return True
    except Exception:  # noqa: BLE001 -- any failure to read is a damaged file
        return False


def _session_files(exp_dir: Path, session: str) -> list[Path]:
    return [exp_dir / f"{pre}{session}{suf}" for pre, suf in _SNAPSHOT_FILES if (exp_dir / f"{pre}{session}{suf}").is_file()]


def snapshot_sessions(exp_dir: Path) -> list[str]:
    """The driver sessions that left a snapshot in ``exp_dir``, oldest first."""
    return sorted({p.name[len(pre):-len(suf)] for pre, suf in _SNAPSHOT_FILES for p in exp_dir.glob(f"{pre}*{suf}")})


def snapshot_intact(exp_dir: Path) -> bool:
    """Whether the newest session's snapshot reads whole (a resume would start from it)."""
    sessions = snapshot_sessions(exp_dir)
    return bool(sessions) and all(_readable(p) for p in _session_files(exp_dir, sessions[-1]))


def set_aside_damaged_snapshot(exp_dir: Path) -> str | None:
    """Before a resume: when a file of the newest session's snapshot cannot be read, rename that
    session's files to ``damaged-*`` (kept, not deleted) so that Tune resumes from the session
    before it, and say so; UserError when no intact snapshot is left or ``tuner.pkl`` is cut short."""
    if (exp_dir / "tuner.pkl").is_file() and not _readable(exp_dir / "tuner.pkl"):
        raise UserError(f"--resume: {exp_dir / 'tuner.pkl'} is damaged (a kill while Tune saved it); "
                        "the finished trials' folders are intact, but the sweep cannot be resumed: start a new one")
    sessions = snapshot_sessions(exp_dir)
    if not sessions:
        return None  # no snapshot at all: Tuner.can_restore has refused the resume already
    note = None
    while sessions:
        newest = sessions.pop()
        files = _session_files(exp_dir, newest)
        if all(_readable(p) for p in files):
            return note
        for p in files:
            p.rename(p.with_name(f"damaged-{p.name}"))
        note = (f"the snapshot of the sweep's session {newest} was damaged (a kill while Tune saved it), set aside "
                f"as damaged-*; resuming from the session before it")
    raise UserError(f"--resume: {exp_dir} holds no intact Tune snapshot (a kill while Tune saved it); "
                    "the finished trials' folders are intact, but the sweep cannot be resumed: start a new one")
