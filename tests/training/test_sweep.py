"""cnnkit sweep: the space from train's options; real `dask scheduler` / `dask worker` processes speaking TLS, with
strangers refused and a worker killed mid-sweep; plain TCP refused beyond loopback; the local cluster's listening
ports and pruning; resume after the client is killed; `cnnkit certs`."""
import csv
import ipaddress
import json
import os
import queue
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from helpers import run_python

from cnnkit import cli
from cnnkit._tls import load_ca, write_cluster_certificates
from cnnkit.models import load
from cnnkit.sweep import INSTALL_HINT, INTERRUPTED, Choice, LogRange, Sweep, dimension, train_actions

distributed = pytest.importorskip("distributed")
optuna = pytest.importorskip("optuna")
psutil = pytest.importorskip("psutil")

# Trials of a few seconds: 400 training and 200 validation images of the built-in data, 2 epochs
SMALL = ["--num-train", "600", "--num-val", "200", "--epochs", "2", "--threads", "1"]
TIMEOUT = 300  # seconds; generous, the test machine is shared
HOST = "127.0.0.1"
STRANGER_TIMEOUT = "5s"  # how long a refused client keeps trying


def cnnkit_command(*args):
    return [sys.executable, "-m", "cnnkit.cli", *map(str, args)]


def read_rows(out):
    with open(out / "trials.csv", newline="") as file:
        return list(csv.DictReader(file))


def output_lines(process):
    """A queue receiving the process's output lines, then None when it ends."""
    lines = queue.Queue()

    def read():
        for line in process.stdout:
            lines.put(line)
        lines.put(None)
    threading.Thread(target=read, daemon=True).start()
    return lines


def wait_for_line(lines, prefix):
    """The lines up to the first that starts with prefix."""
    seen = []
    while not seen or not seen[-1].startswith(prefix):
        line = lines.get(timeout=TIMEOUT)
        assert line is not None, f"output ended before a line starting {prefix!r}:\n{''.join(seen)}"
        seen.append(line)
    return seen




def tls_options(folder, name):
    """`dask scheduler` / `dask worker` / `cnnkit sweep` options presenting folder's certificate `name`."""
    return ["--tls-ca-file", folder / "ca.pem", "--tls-cert", folder / f"{name}.pem",
            "--tls-key", folder / f"{name}-key.pem"]


def security(ca, cert_folder, name="client"):
    """The Security of a client trusting ca.pem in `ca` and showing cert_folder's certificate `name`."""
    return distributed.Security(tls_ca_file=os.fspath(ca / "ca.pem"), require_encryption=True,
                                tls_client_cert=os.fspath(cert_folder / f"{name}.pem"),
                                tls_client_key=os.fspath(cert_folder / f"{name}-key.pem"))


def wait_for_file(path, process):
    deadline = time.monotonic() + TIMEOUT
    while not path.exists():
        assert process.poll() is None and time.monotonic() < deadline, f"no {path} from {process.args}"
        time.sleep(0.1)


def listening_sockets(process):
    """[(pid, ip, port)] of the TCP sockets that process and its descendants listen on."""
    return [(each.pid, connection.laddr.ip, connection.laddr.port)
            for each in [process, *process.children(recursive=True)]
            for connection in each.net_connections(kind="tcp") if connection.status == psutil.CONN_LISTEN]


def speaks_tls(port):
    """Whether the server at 127.0.0.1:port completes a TLS handshake (its certificate unchecked)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection((HOST, port), timeout=5) as plain, context.wrap_socket(plain):
            return True
    except OSError:  # ssl.SSLError, a reset or a timeout: no TLS server there
        return False


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """(folder, rogue): `cnnkit certs` for 127.0.0.1 and localhost, and the same from another CA."""
    folder, rogue = tmp_path_factory.mktemp("certs"), tmp_path_factory.mktemp("rogue-certs")
    assert cli.main(["certs", str(folder), "--hosts", HOST, "localhost"]) == 0
    write_cluster_certificates(rogue, [HOST])
    return folder, rogue


@pytest.fixture
def tls_cluster(certificates, tmp_path):
    """(address, worker processes, scheduler process, log) of a `dask scheduler` and two `dask worker`s (no
    nanny, 1 thread) on 127.0.0.1 that speak TLS only, their HTTP servers included."""
    folder, _ = certificates
    scheduler_file, log_path = tmp_path / "scheduler.json", tmp_path / "dask.log"
    dask = [sys.executable, "-m", "dask"]
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__DASHBOARD__TLS__CERT": os.fspath(folder / f"{HOST}.pem"),
           "DASK_DISTRIBUTED__SCHEDULER__DASHBOARD__TLS__KEY": os.fspath(folder / f"{HOST}-key.pem")}
    with open(log_path, "w") as log:
        processes = [subprocess.Popen([*dask, "scheduler", "--protocol", "tls", "--host", HOST, "--port", "0",
                                       "--dashboard-address", f"{HOST}:0", "--scheduler-file", scheduler_file,
                                       *tls_options(folder, HOST)], stdout=log, stderr=log, env=env)]
        try:
            wait_for_file(scheduler_file, processes[0])
            address = json.loads(scheduler_file.read_text())["address"]
            processes += [subprocess.Popen([*dask, "worker", address, "--nthreads", "1", "--no-nanny", "--host", HOST,
                                            "--dashboard-address", f"{HOST}:0", "--name", f"worker-{i}",
                                            *tls_options(folder, HOST)], stdout=log, stderr=log, env=env)
                          for i in range(2)]
            with distributed.Client(address, security=security(folder, folder), timeout=TIMEOUT) as client:
                client.wait_for_workers(2, timeout=TIMEOUT)
            yield address, processes[1:], processes[0], log_path
        finally:
            for process in processes:
                process.kill()
                process.wait(timeout=TIMEOUT)


# ---------------------------------------------------------------------- the space

def test_values_ranges_and_choices_are_read_by_train_options():
    actions = train_actions()
    assert dimension(actions["lr"], "1e-4:1e-1") == LogRange(1e-4, 1e-1)
    assert dimension(actions["lr"], (1e-4, 1e-1)) == LogRange(1e-4, 1e-1)
    assert dimension(actions["lr"], "3e-3") == 3e-3
    assert dimension(actions["model"], "convnet,twolayer") == Choice(("convnet", "twolayer"))
    assert dimension(actions["batch_size"], [32, "64"]) == Choice((32, 64))
    assert dimension(actions["no_augment"], True) is True
    epochs = dimension(actions["epochs"], "2:8").distribution()
    assert isinstance(epochs, optuna.distributions.IntDistribution) and epochs.log
    assert isinstance(dimension(actions["lr"], "1e-4:1e-1").distribution(), optuna.distributions.FloatDistribution)


def test_a_trial_gets_the_namespace_cnnkit_train_would(tmp_path):
    """Built from train's parser: options train gains (--l1, --width, ...) need no change in the sweep."""
    train = vars(cli.build_parser().parse_args(["train", "--lr", "0.01", "--model", "twolayer"]))
    trial = vars(Sweep({"model": "twolayer", "lr": (1e-3, 1e-1)}, tmp_path, trials=1).options({"lr": 0.01}))
    assert trial == {key: value for key, value in train.items() if key not in ("command", "run", "out", "resume")}


@pytest.mark.parametrize(("argv", "message"), [
    (["--lr", "1:0"], "expected a number > 0, got '0'"),
    (["--lr", "1e-1:1e-3"], "0 < LOW < HIGH"),
    (["--lr", "abc"], "expected a number > 0, got 'abc'"),
    (["--reg", "0:1e-2"], "0 < LOW < HIGH"),
    (["--model", "convnet,alexnet"], "expected one of"),
    (["--update-rule", "sgd:adam"], "expected one of"),
    (["--lr", "1e-3:1e-2:1e-1"], "a range is LOW:HIGH"),
    (["--no-such-option", "3"], "unrecognized arguments: --no-such-option"),
])
def test_bad_ranges_are_usage_errors_before_anything_runs(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_status:
        cli.main(["sweep", "--out", str(tmp_path / "sweep"), *argv])
    assert exit_status.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize(("space", "message"), [
    ({"lr": (1e-1, 1e-3)}, "0 < LOW < HIGH"),
    ({"lr": "abc"}, "expected a number"),
    ({"model": ("convnet", "twolayer")}, "takes no range"),
    ({"width_of_everything": 3}, "unknown option"),
    ({"epochs": [3]}, "at least two values"),
])
def test_the_python_api_rejects_bad_spaces(tmp_path, space, message):
    with pytest.raises(ValueError, match=message):
        Sweep(space, tmp_path, trials=2)


@pytest.mark.parametrize(("options", "message"), [
    ({"trials": 0}, "trials must be an int >= 1"),
    ({"workers": 2, "scheduler": "tcp://127.0.0.1:8786"}, "workers is for the local cluster"),
    ({"sampler": "grid"}, "sampler must be one of random, tpe"),
])
def test_the_python_api_rejects_bad_settings(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        Sweep({"lr": (1e-3, 1e-2)}, tmp_path, **{"trials": 2, **options})


def test_without_the_extras_the_command_names_the_install_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    assert cli.main(["sweep", "--out", str(tmp_path), "--trials", "1"]) == 1
    assert INSTALL_HINT in capsys.readouterr().err


@pytest.mark.subprocess
def test_importing_cnnkit_imports_neither_dask_nor_optuna():
    code = ("import sys, cnnkit; cnnkit.Sweep; "
            "print(sorted({'dask', 'distributed', 'optuna'} & {m.split('.')[0] for m in sys.modules}))")
    assert run_python(code).stdout == "[]\n"


# ---------------------------------------------------------------------- running sweeps

def wait_for_running_trial(study_file):
    """Return once the study holds a trial that has started and not finished."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        study = optuna.load_study(study_name="cnnkit-sweep", storage=f"sqlite:///{study_file}")
        if any(trial.state == optuna.trial.TrialState.RUNNING for trial in study.trials):
            return
        time.sleep(0.05)
    raise AssertionError(f"no trial of {study_file} started within {TIMEOUT} s")


@pytest.mark.subprocess
def test_resume_after_the_client_is_killed_runs_only_the_missing_trials(tmp_path):
    out = tmp_path / "sweep"
    command = cnnkit_command("sweep", "--workers", 1, "--trials", 3, "--lr", "1e-3:1e-2", "--pruner", "none",
                             *SMALL, "--epochs", 8, "--out", out)  # trials of seconds: time to kill one mid-way
    client = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        wait_for_line(output_lines(client), "trial 0 ")
        wait_for_running_trial(out / "study.db")
    finally:
        os.killpg(client.pid, signal.SIGKILL)  # the client and its local cluster's workers
        client.wait()
    study = optuna.load_study(study_name="cnnkit-sweep", storage=f"sqlite:///{out / 'study.db'}")
    finished = {trial.number: trial.user_attrs for trial in study.trials if trial.state.is_finished()}
    cut_short = {trial.number: trial.params for trial in study.trials if not trial.state.is_finished()}
    assert 0 in finished and cut_short

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    rows = {int(row["number"]): row for row in read_rows(out)}
    for number, attrs in finished.items():  # not run again: the same seconds and worker as before the kill
        assert (float(rows[number]["seconds"]), rows[number]["worker"]) == (attrs["seconds"], attrs["worker"])
        assert f"trial {number} " not in rerun.stdout
    for number, params in cut_short.items():  # failed as interrupted, replaced by a trial of the same params
        assert (rows[number]["state"], rows[number]["reason"]) == ("failed", INTERRUPTED)
        assert any(float(row["lr"]) == params["lr"] and row["state"] == "complete" for row in rows.values())
    assert sum(row["state"] == "complete" for row in rows.values()) == 3


# ---------------------------------------------------------------------- clusters of dask processes, TLS

@pytest.mark.subprocess
def test_sweep_over_tls_survives_a_killed_worker(tls_cluster, certificates, tmp_path):
    address, workers, _, _ = tls_cluster
    assert address.startswith(f"tls://{HOST}:")
    out, folder = tmp_path / "sweep", certificates[0]
    # the CA from Dask's configuration, this client's certificate and key from the options
    client = subprocess.Popen(cnnkit_command("sweep", "--scheduler", address, *tls_options(folder, "client")[2:],
                                             "--trials", 6, "--update-rule", "sgd", "--lr", "1e-2,1e3",
                                             "--pruner", "none", *SMALL, "--out", out),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": os.fspath(folder / "ca.pem")})
    lines = output_lines(client)
    printed = wait_for_line(lines, "trial ")  # one trial done, the other worker is mid-trial
    workers[0].kill()
    assert client.wait(timeout=TIMEOUT) == 0, "".join(printed + list(iter(lines.get, None)))
    rows = read_rows(out)
    assert [int(row["number"]) for row in rows] == list(range(6))
    assert all(row["worker"].startswith(f"tls://{HOST}:") for row in rows if row["state"] == "complete")
    outcomes = {(row["lr"], row["state"], row["reason"].partition(" is ")[0]) for row in rows}
    # the killed worker's trial ran again elsewhere; lr 1000 makes the loss NaN
    assert outcomes == {("0.01", "complete", ""), ("1000.0", "failed", "FloatingPointError: loss")}
    assert load(out / "best" / "model.npz").num_params > 0
    assert {path.name for path in (out / "best").iterdir()} >= {"model.npz", "model.json", "history.json",
                                                                "curves.png", "checkpoint.npz"}
    assert (out / "sweep.png").stat().st_size > 0


class NoCertificate(distributed.Security):
    """A client's security that trusts the cluster's CA but shows no certificate of its own."""

    def get_connection_args(self, role):
        context = ssl.create_default_context(cafile=self.tls_ca_file)
        context.check_hostname = False
        return {"ssl_context": context, "require_encryption": True, "extra_conn_args": {}}


@pytest.mark.subprocess
def test_the_tls_cluster_listens_on_loopback_in_tls_only_and_strangers_run_nothing(tls_cluster, certificates,
                                                                                    tmp_path):
    address, workers, scheduler, log = tls_cluster
    sockets = [(ip, speaks_tls(port)) for process in (scheduler, *workers)
               for _, ip, port in listening_sockets(psutil.Process(process.pid))]
    assert sockets == [(HOST, True)] * 6  # each process: its Dask listener and its HTTP server
    folder, rogue = certificates
    strangers = {  # each trusts the cluster's CA: only the server's check of the client can turn it away
        "no certificate": (address, NoCertificate(tls_ca_file=os.fspath(folder / "ca.pem"))),
        "a certificate from another CA": (address, security(folder, rogue, HOST)),
        "plain TCP": (address.replace("tls://", "tcp://"), None),
    }
    marker = tmp_path / "marker"
    for name, (stranger_address, stranger_security) in strangers.items():
        with pytest.raises(OSError) as refused:
            with distributed.Client(stranger_address, security=stranger_security,
                                    timeout=STRANGER_TIMEOUT) as client:
                client.submit(Path.write_text, marker, "ran").result(timeout=30)
        print(f"{name}: {refused.value!r}")  # what the stranger sees, shown with pytest -s
        assert not marker.exists(), name
    handshakes_failed = [line for line in log.read_text().splitlines() if "TLS handshake failed" in line]
    assert handshakes_failed

    with distributed.Client(address, security=security(folder, folder), timeout=TIMEOUT) as client:
        def scheduler_history(dask_scheduler):
            return dask_scheduler.transition_counter, sorted(dask_scheduler.clients)
        transitions, clients = client.run_on_scheduler(scheduler_history)
        assert transitions == 0 and clients == sorted(["fire-and-forget", client.id])  # no task ever reached it
        assert client.submit(Path.write_text, marker, "ran").result(timeout=TIMEOUT) == 3  # the checks can fail:
        assert marker.read_text() == "ran" and client.run_on_scheduler(scheduler_history)[0] > 0


# ---------------------------------------------------------------------- plain TCP

@pytest.mark.parametrize("address", ["tcp://10.1.2.3:8786", "10.1.2.3:8786", "tcp://node7.lan:8786"])
def test_plain_tcp_beyond_loopback_is_refused_with_the_way_to_tls(tmp_path, capsys, address):
    out = tmp_path / "sweep"
    assert cli.main(["sweep", "--scheduler", address, "--trials", "1", "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert f"refusing the plain-TCP scheduler {address}" in error
    assert "cnnkit certs" in error and "--scheduler tls://HOST:8786" in error and "--insecure" in error
    assert not out.exists()
    Sweep({}, out, trials=1, scheduler=address, insecure=True)  # accepted when the user says so


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:8786", "tcp://localhost:8786", "tcp://[::1]:8786",
                                     "127.0.0.2:8786"])
def test_plain_tcp_on_loopback_needs_no_flag(tmp_path, address):
    Sweep({}, tmp_path, trials=1, scheduler=address)


@pytest.mark.parametrize(("options", "message"), [
    ({"scheduler": "ucx://10.1.2.3:8786"}, "expected a scheduler address tls://HOST:PORT"),
    ({"scheduler": "tcp://127.0.0.1:8786", "tls_ca_file": "ca.pem"}, "TLS files need a tls:// scheduler"),
    ({"tls_cert": "client.pem"}, "the local cluster makes its own certificate"),
])
def test_tls_settings_that_do_not_fit_are_refused(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        Sweep({}, tmp_path, trials=1, **options)


def test_a_tls_scheduler_without_certificates_is_refused_before_anything_is_written(tmp_path, certificates, capsys):
    folder, _ = certificates
    out = tmp_path / "sweep"
    assert cli.main(["sweep", "--scheduler", "tls://127.0.0.1:8786", "--out", str(out)]) == 1
    assert "needs the cluster's CA certificate and this client's certificate" in capsys.readouterr().err
    assert cli.main(["sweep", "--scheduler", "tls://127.0.0.1:8786", "--out", str(out),
                     *map(str, tls_options(folder, "nobody"))]) == 1
    assert f"TLS file {folder / 'nobody.pem'} not found" in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------------- the local cluster

@pytest.fixture
def local_sockets(monkeypatch):
    """[(ip, speaks TLS)] of the sockets that this process and its children listen on once a sweep's cluster is up
    and did not before (earlier tests may have left listeners in this process, such as MPI's)."""
    sockets, before = [], set(listening_sockets(psutil.Process()))

    def look_then_run(sweep, client, study, missing):
        opened = set(listening_sockets(psutil.Process())) - before
        sockets.extend((ip, speaks_tls(port)) for _, ip, port in sorted(opened))
        return run_trials(sweep, client, study, missing)
    run_trials = Sweep._run_trials
    monkeypatch.setattr(Sweep, "_run_trials", look_then_run)
    return sockets


@pytest.mark.subprocess
def test_local_cluster_speaks_only_tls_on_loopback_and_prunes_the_trials_falling_behind(tmp_path, local_sockets,
                                                                                        capsys):
    """One worker runs the trials in turn: after the first, those behind after epoch 1 stop there."""
    space = {"lr": (1e-6, 1e-1), "epochs": 2, "num_train": 600, "num_val": 200, "threads": 1}
    rows = Sweep(space, tmp_path, trials=6, workers=1).run()
    assert f"local cluster on {HOST}: TLS with a throwaway certificate" in capsys.readouterr().out
    # the scheduler, the nanny and the worker, each with its Dask listener; the scheduler's and worker's HTTP servers
    assert local_sockets == [(HOST, True)] * 5
    assert [row["number"] for row in rows] == list(range(6))
    assert all(row["worker"].startswith(f"tls://{HOST}:") for row in rows)
    pruned = [row for row in rows if row["state"] == "pruned"]
    complete = [row for row in rows if row["state"] == "complete"]
    assert pruned and complete
    assert all(row["epochs"] == 1 for row in pruned) and all(row["epochs"] == 2 for row in complete)
    best = max(complete, key=lambda row: row["val_accuracy"])
    info = json.loads((tmp_path / "best" / "model.json").read_text())
    assert info["sweep_trial"] == best["number"] and 0 <= info["test_accuracy"] <= 1
    assert [path.name for path in (tmp_path / "checkpoints").iterdir()] == [f"trial-{best['number']}.npz"]
    assert read_rows(tmp_path)[best["number"]]["state"] == "complete"


@pytest.mark.subprocess
def test_without_cryptography_the_local_cluster_is_plain_tcp_on_loopback_only(tmp_path, local_sockets, monkeypatch,
                                                                              capsys):
    def no_cryptography(cls, **kwargs):
        raise ImportError("Using `Security.temporary` requires `cryptography`")
    monkeypatch.setattr(distributed.Security, "temporary", classmethod(no_cryptography))
    rows = Sweep({"epochs": 1, "num_train": 200, "num_val": 100, "threads": 1}, tmp_path, trials=1, workers=1).run()
    assert f"local cluster on {HOST}: plain TCP (TLS needs the cryptography package" in capsys.readouterr().out
    assert local_sockets == [(HOST, False)] * 5  # the probe tells TLS from plain TCP
    assert rows[0]["state"] == "complete" and rows[0]["worker"].startswith(f"tcp://{HOST}:")


# ---------------------------------------------------------------------- cnnkit certs

def test_certs_are_signed_by_the_ca_name_their_hosts_and_keep_keys_private(certificates):
    folder, rogue = certificates
    _, ca_cert = load_ca(folder)
    names = {path.name for path in folder.iterdir()}
    assert names == {name + suffix for name in ("ca", "client", HOST, "localhost") for suffix in (".pem", "-key.pem")}
    for path in folder.iterdir():
        assert path.stat().st_mode & 0o777 == (0o600 if path.name.endswith("-key.pem") else 0o644), path
    assert folder.stat().st_mode & 0o777 == 0o700
    for name, hosts in [(HOST, [x509.IPAddress(ipaddress.ip_address(HOST))]),
                        ("localhost", [x509.DNSName("localhost")])]:
        cert = x509.load_pem_x509_certificate((folder / f"{name}.pem").read_bytes())
        cert.verify_directly_issued_by(ca_cert)
        assert list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value) == hosts
    stranger = x509.load_pem_x509_certificate((rogue / f"{HOST}.pem").read_bytes())
    with pytest.raises(InvalidSignature):
        stranger.verify_directly_issued_by(ca_cert)


def test_certs_reuse_the_folders_ca_to_add_machines(tmp_path, capsys):
    assert cli.main(["certs", str(tmp_path), "--hosts", "10.0.0.1"]) == 0
    ca = (tmp_path / "ca.pem").read_bytes()
    assert cli.main(["certs", str(tmp_path), "--hosts", "node2.lan"]) == 0
    assert "dask scheduler --protocol tls --host node2.lan" in capsys.readouterr().out
    assert (tmp_path / "ca.pem").read_bytes() == ca
    _, ca_cert = load_ca(tmp_path)
    for name in ("10.0.0.1", "node2.lan", "client"):
        x509.load_pem_x509_certificate((tmp_path / f"{name}.pem").read_bytes()).verify_directly_issued_by(ca_cert)


@pytest.mark.parametrize(("hosts", "message"), [
    (["bad host"], "expected an IP address or a DNS name, got 'bad host'"),
    (["../escape"], "expected an IP address or a DNS name"),
    (["client"], "names the folder's client.pem"),
])
def test_certs_refuse_bad_hosts(tmp_path, capsys, hosts, message):
    assert cli.main(["certs", str(tmp_path / "certs"), "--hosts", *hosts]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "certs").exists()


def test_certs_refuse_a_ca_key_that_is_not_the_cas(tmp_path, capsys):
    write_cluster_certificates(tmp_path / "a", ["10.0.0.1"])
    write_cluster_certificates(tmp_path / "b", ["10.0.0.1"])
    (tmp_path / "a" / "ca-key.pem").write_bytes((tmp_path / "b" / "ca-key.pem").read_bytes())
    assert cli.main(["certs", str(tmp_path / "a"), "--hosts", "10.0.0.2"]) == 1
    assert "ca-key.pem is not the key of" in capsys.readouterr().err
    assert not (tmp_path / "a" / "10.0.0.2.pem").exists()
