"""One study across machines without a shared disk between their workdirs.

"Machines" here are separate workdirs and separate copies of one dataset at different
paths, sharing only the PostgreSQL study and one artifact folder (``--artifacts``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from hpsearch.cli import build_parser, main
from hpsearch.storage import engine_kwargs, open_storage
from hpsearch.study.record import DataRecord
from hpsearch.trainer_api import TrainerAPI
from tests.hpsearch import fake_trainer
from tests.hpsearch.conftest import PG_URL, ROOT, fake_env, pg_available, run_cli
from tests.hpsearch.study_checks import start_cli
from trainer.errors import UserError
from trainer.fingerprint import dataset_fingerprint

ONE_POINT = """
[study]
sampler = "grid"
metric = "val_accuracy"
direction = "maximize"

[pruner]
kind = "none"

[fixed]
pretrained = false
batch_size = 16

[space]
lr = [0.01]

[scale.full]
epochs = {epochs}
image_size = 32
val_fraction = 0.25
test_fraction = 0.25
"""


def _require_pg() -> None:
    if not pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_URL}")
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")


@pytest.fixture(scope="module")
def demo_copies(tmp_path_factory) -> tuple[Path, Path]:
    """The same synthetic dataset at two paths, as two machines would mount it."""
    from trainer.demo import write_demo_dataset

    base = tmp_path_factory.mktemp("datasets")
    first = base / "machine1" / "data" / "xray"
    write_demo_dataset(first, n=64, size=32, seed=1)
    second = base / "machine2" / "mnt" / "copy-of-xray"
    shutil.copytree(first, second)
    return first, second


def _without_images(source: Path, dest: Path, folder: str, n: int) -> Path:
    """A copy of ``source`` missing the last ``n`` images of class folder ``folder``."""
    shutil.copytree(source, dest)
    images = sorted((dest / folder / "images").iterdir())
    for path in images[-n:]:
        path.unlink()
    return dest


# -- the fingerprint ----------------------------------------------------------------------


def test_fingerprint_is_the_content_not_the_path(demo_copies, tmp_path: Path) -> None:
    first, second = (dataset_fingerprint(p) for p in demo_copies)
    # The same images at another path are the same dataset ...
    assert first == second
    assert sum(first.class_counts.values()) == 64
    # ... a file of another size is not, though every class keeps its count.
    changed = tmp_path / "changed"
    shutil.copytree(demo_copies[0], changed)
    image = sorted((changed / "Normal" / "images").iterdir())[0]
    image.write_bytes(image.read_bytes() + b"\0")
    third = dataset_fingerprint(changed)
    assert third.digest != first.digest and third.class_counts == first.class_counts


def _record(root: str, fingerprint: str = "", **counts: int) -> DataRecord:
    return DataRecord(
        root=root, image_size=32, val_fraction=0.25, fingerprint=fingerprint, class_counts=counts
    )


def test_data_difference_names_the_classes_that_differ() -> None:
    there = _record("/a", "f1", covid=10, normal=20)
    # Same fingerprint at another path: the same data.
    assert there.difference(_record("/b", "f1", covid=10, normal=20)) is None
    # Another fingerprint: each class whose count differs, in one line.
    message = there.difference(_record("/a", "f2", covid=7, normal=20))
    assert message == "images per class differ: covid 10 there, 7 now"
    # Same counts, other files: said so, with both fingerprints.
    message = there.difference(_record("/a", "f2", covid=10, normal=20))
    assert message is not None and "other files" in message and "f1" in message
    # A study recorded before fingerprints existed is compared by its path.
    assert _record("/a").difference(_record("/a", "f1")) is None
    assert _record("/a").difference(_record("/b", "f1")) == "/a there, /b now"


def _stand_in_run(study: Path, url: str, work: Path, data: Path, name: str) -> int:
    """``hpsearch run`` in-process: the trainer's real data loading, the fake ``fit``."""
    from trainer.data import load_data

    trainer = TrainerAPI(load_data=load_data, fit=fake_trainer.fit)
    argv = ["run", "--study", str(study), "--name", name, "--storage", url]
    argv += ["--workdir", str(work), "--data", str(data), "--wandb", "off"]
    return main(argv, trainer=trainer)


@pytest.mark.slow
def test_same_data_elsewhere_joins_other_data_is_refused(
    demo_copies, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("FAKE_TRAINER_EPOCH_S", "0")
    study = tmp_path / "one.toml"
    study.write_text(ONE_POINT.format(epochs=1))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    first, second = demo_copies
    code = _stand_in_run(study, url, tmp_path / "w1", first, "s")
    assert code == 0, capsys.readouterr().err
    # The copy at another path, from another workdir, joins the study.
    code = _stand_in_run(study, url, tmp_path / "w2", second, "s")
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    # A copy that lacks three COVID images is refused, in one line naming the class.
    other = _without_images(first, tmp_path / "other", "COVID", 3)
    code = _stand_in_run(study, url, tmp_path / "w3", other, "s")
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("hpsearch run: error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    count = dataset_fingerprint(first).class_counts["covid"]
    assert f"images per class differ: covid {count} there, {count - 3} now" in errors[0]


# -- the connect timeout ------------------------------------------------------------------


def test_connect_timeout_default_and_the_urls_own() -> None:
    # 10 s unless the URL says otherwise ...
    assert engine_kwargs("postgresql+psycopg://u@h/db")["connect_args"]["connect_timeout"] == 10
    own = engine_kwargs("postgresql+psycopg://u@h/db?connect_timeout=3")
    # ... and then the URL's value is the one psycopg gets (from the URL).
    assert "connect_timeout" not in own["connect_args"]


class _Blackhole:
    """A port on 127.0.0.1 that takes no connection: its accept queue is full and no one
    accepts, so the kernel drops further SYNs, as a firewall that drops packets does."""

    def __enter__(self) -> int:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(0)
        port = self.server.getsockname()[1]
        self.fillers = []
        for _ in range(3):
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", port))
            self.fillers.append(client)
        time.sleep(0.2)
        return port

    def __exit__(self, *exc: object) -> None:
        for sock in [*self.fillers, self.server]:
            sock.close()


def test_a_server_that_drops_packets_fails_within_the_urls_timeout() -> None:
    with _Blackhole() as port:
        started = time.monotonic()
        with pytest.raises(UserError) as info:
            open_storage(f"postgresql://u@127.0.0.1:{port}/db?connect_timeout=2")
        elapsed = time.monotonic() - started
    # One line naming the timeout, in seconds rather than TCP's minutes of SYN retries.
    assert "timeout" in str(info.value) and "\n" not in str(info.value)
    assert elapsed < 8, elapsed


def _timed_run(study: Path, url: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = run_cli(["run", "--study", str(study), "--storage", url], fake_env(tmp_path), 120)
    return result, time.monotonic() - started


@pytest.mark.slow
def test_run_on_a_server_that_drops_packets_fails_within_ten_seconds(tmp_path: Path) -> None:
    study = tmp_path / "one.toml"
    study.write_text(ONE_POINT.format(epochs=1))
    # A closed port is refused at once: the command's own start-up time.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused_url = f"postgresql://u@127.0.0.1:{closed.getsockname()[1]}/db"
    closed.close()
    refused, baseline = _timed_run(study, refused_url, tmp_path)
    assert refused.returncode == 2, refused.stderr
    with _Blackhole() as port:
        result, elapsed = _timed_run(study, f"postgresql://u@127.0.0.1:{port}/db", tmp_path)
    # The default connect timeout (10 s) ends it: exit 2, one line, before any data work ...
    assert result.returncode == 2, result.stderr
    assert "connection timeout expired" in result.stderr
    # ... about 10 s after the start-up a refused port costs too (TCP alone retries for
    # minutes).
    assert 8 < elapsed - baseline < 16, (baseline, elapsed)


# -- the launch files ---------------------------------------------------------------------

DEPLOY = ROOT / "deploy"
LAUNCH_FILES = [DEPLOY / "slurm-array.sbatch", DEPLOY / "k8s-indexed-job.yaml"]


def _command_flags(text: str, command: str) -> set[str]:
    """Every ``--flag`` of each ``hpsearch COMMAND`` invocation in shell ``text``."""
    text = re.sub(r"\\\n", " ", text)  # shell line continuations
    flags: set[str] = set()
    for line in text.splitlines():
        for match in re.finditer(rf"hpsearch {command}\b(.*)", line):
            flags |= set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", match.group(1)))
    return flags


def _launch_text(path: Path) -> str:
    """The file's text; a YAML file's strings (folded commands joined), one a line."""
    if path.suffix != ".yaml":
        return path.read_text()
    import yaml

    def strings(node: object) -> list[str]:
        if isinstance(node, str):
            return [node.replace("\n", " ")]
        if isinstance(node, dict):
            node = list(node.values())
        return [s for value in node for s in strings(value)] if isinstance(node, list) else []

    return "\n".join(strings(yaml.safe_load(path.read_text())))


def _parser_flags(command: str) -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return {s for a in sub.choices[command]._actions for s in a.option_strings}


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_files_use_only_flags_that_exist(path: Path) -> None:
    flags = _command_flags(_launch_text(path), "run")
    # The file starts workers against one study storage and one artifact location ...
    assert {"--storage", "--artifacts", "--data", "--study", "--name"} <= flags, flags
    # ... with flags that `hpsearch run` has.
    assert flags <= _parser_flags("run"), flags - _parser_flags("run")


def test_readme_many_machines_commands_use_only_flags_that_exist() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Many machines", 1)[1].split("\n## ", 1)[0]
    for command in ("run", "best", "report", "dashboard", "status"):
        flags = _command_flags(section, command)
        assert flags <= _parser_flags(command), (command, flags - _parser_flags(command))
    assert _command_flags(section, "run") >= {"--storage", "--artifacts", "--data"}


# -- two machines, one study, one artifact folder -----------------------------------------


def _machine_args(study: Path, name: str, work: Path, data: Path, shared: Path) -> list[str]:
    return [
        "run",
        "--study",
        str(study),
        "--name",
        name,
        "--storage",
        PG_URL,
        "--workdir",
        str(work),
        "--data",
        str(data),
        "--artifacts",
        str(shared),
        "--wandb",
        "off",
    ]


def _epochs(log: Path) -> list[tuple[str, str, int]]:
    if not log.exists():
        return []
    rows = [line.split() for line in log.read_text().splitlines() if line.strip()]
    return [(pid, slot, int(epoch)) for pid, slot, epoch in rows]


def _wait_for_epoch(log: Path, epoch: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e == epoch for _, _, e in _epochs(log)):
            return
        if proc.poll() is not None:
            _out, err = proc.communicate()
            pytest.fail(f"machine 1 ended early ({proc.returncode}): {err[-3000:]}")
        time.sleep(0.1)
    pytest.fail(f"machine 1 trained no epoch {epoch} in {timeout} s")


@pytest.mark.slow
def test_two_machines_resume_a_killed_trial_and_a_third_exports_it(
    demo_copies, tmp_path: Path
) -> None:
    _require_pg()
    first, second = demo_copies
    study = tmp_path / "one.toml"
    study.write_text(ONE_POINT.format(epochs=4))
    name = f"m{uuid.uuid4().hex[:10]}"
    shared = tmp_path / "shared"
    log = tmp_path / "epochs.log"
    env = fake_env(tmp_path, STAND_IN_TRAINER="tests.hpsearch.epoch_log_trainer")

    # Machine 1 trains epochs 1 and 2, and is killed (SIGKILL) in the pause after epoch 2.
    argv = _machine_args(study, name, tmp_path / "w1", first, shared)
    machine1 = subprocess.Popen(
        [sys.executable, "-m", "tests.hpsearch.stand_in_cli", *argv],
        env={**env, "EPOCH_PAUSE_S": "15"},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_for_epoch(log, 2, machine1, timeout=180)
    finally:
        os.killpg(machine1.pid, signal.SIGKILL)
        out1, err1 = machine1.communicate()
    print(f"machine 1 killed (exit {machine1.returncode}):", out1, err1, sep="\n")

    # Machine 2: its own workdir and its own copy of the data at another path.
    result = run_cli(_machine_args(study, name, tmp_path / "w2", second, shared), env)
    assert result.returncode == 0, result.stderr[-3000:]
    print(result.stdout, result.stderr, sep="\n")
    epochs = _epochs(log)
    print("epochs trained (pid slot epoch):", log.read_text(), sep="\n")
    by_pid: dict[str, list[int]] = {}
    for pid, slot, epoch in epochs:
        assert slot == "slot-00000"
        by_pid.setdefault(pid, []).append(epoch)
    # Each epoch trained once: 1-2 on machine 1, 3-4 resumed on machine 2.
    assert sorted(e for _, _, e in epochs) == [1, 2, 3, 4], epochs
    assert sorted(by_pid.values()) == [[1, 2], [3, 4]], by_pid
    # The checkpoints live in the shared folder, none in either workdir.
    # under the study's own id folder (studies/<name>/<uid>/), one per study
    (slot_dir,) = (shared / "studies" / name).glob("*/slot-00000")
    assert (slot_dir / "best.pt").is_file() and (slot_dir / "last.pt").is_file()
    assert not (tmp_path / "w1" / "studies").exists()
    assert not (tmp_path / "w2" / "studies").exists()

    # Machine 3: a fresh workdir, machine 1's copy of the data gone, no --retrain.
    first.rename(first.with_name("unmounted"))
    try:
        out = tmp_path / "export"
        result = run_cli(
            [
                "best",
                "--study",
                name,
                "--storage",
                PG_URL,
                "--workdir",
                str(tmp_path / "w3"),
                "--artifacts",
                str(shared),
                "--data",
                str(second),
                "--export",
                str(out),
                "--device",
                "cpu",
            ],
            env,
        )
    finally:
        first.with_name("unmounted").rename(first)
    assert result.returncode == 0, result.stderr[-3000:]
    print(result.stdout)
    # The trial machine 2 completed (trial 0 was machine 1's, failed by its heartbeat).
    assert re.search(r"^exported trial 1 of study", result.stdout, flags=re.M)
    assert "stored the exported files as artifacts of trial 1" in result.stdout
    assert (out / "model.pt").is_file() and (out / "model.onnx").is_file()


# -- many workers on one server -----------------------------------------------------------

MANY_TRIALS = """
[study]
sampler = "random"
seed = 5

[budget]
n_trials = {n_trials}

[space]
lr = {{ low = 0.0001, high = 0.1, log = true }}

[scale.full]
epochs = 3
image_size = 32
"""


def _descendants(root: int) -> set[int]:
    """``root`` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _watch_connections(
    stop: threading.Event, peaks: dict[str, int], totals: list[int], root: int
) -> None:
    """Sample pg_stat_activity: the most connections each process of the run below
    ``root`` held at once (other hpsearch processes on the same server are not counted)."""
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        while not stop.is_set():
            rows = conn.execute(
                "SELECT application_name, count(*) FROM pg_stat_activity "
                "WHERE application_name LIKE 'hpsearch %' GROUP BY application_name"
            ).fetchall()
            mine = _descendants(root)
            rows = [(app, n) for app, n in rows if int(app.rsplit(" ", 1)[1]) in mine]
            for app, count in rows:
                peaks[app] = max(peaks.get(app, 0), count)
            totals.append(sum(count for _, count in rows))
            time.sleep(0.05)


@pytest.mark.slow
def test_many_workers_hold_at_most_two_connections_each(tmp_path: Path) -> None:
    # 16 workers measured the same way: 17 processes, at most 2 connections each.
    workers = 32
    _require_pg()
    study = tmp_path / "many.toml"
    study.write_text(MANY_TRIALS.format(n_trials=workers * 2))
    name = f"c{uuid.uuid4().hex[:10]}"
    args = ["run", "--study", str(study), "--name", name, "--storage", PG_URL]
    args += ["--workdir", str(tmp_path / "w"), "--data", str(tmp_path), "--wandb", "off"]
    args += ["--workers", str(workers)]
    peaks: dict[str, int] = {}
    totals: list[int] = []
    stop = threading.Event()
    proc = start_cli(args, fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0.3"))
    watcher = threading.Thread(target=_watch_connections, args=(stop, peaks, totals, proc.pid))
    watcher.start()
    try:
        out, err = proc.communicate(timeout=600)
    finally:
        stop.set()
        watcher.join()
        if proc.poll() is None:
            proc.kill()
    output = out + err
    assert proc.returncode == 0, output[-3000:]
    # No connection refused by the server ...
    assert "too many" not in output.lower() and "connection" not in err.lower()
    # ... every worker process the run started (fewer than asked where the machine's
    # memory holds fewer) seen, none with more than two connections at once.
    line = re.search(r"(\d+) worker\(s\) on CPU", output)  # the run's first line
    assert line is not None, output[-3000:]
    started = int(line[1])
    assert len(peaks) >= started, (started, peaks)
    assert max(peaks.values()) <= 2, peaks
    print(
        f"{workers} workers: {len(peaks)} processes, peak {max(totals)} connections, "
        f"per process {sorted(peaks.values())}"
    )
