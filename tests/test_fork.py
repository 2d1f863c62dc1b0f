"""Fork safety: a model whose worker pool started in a parent keeps working in a forked child
(multiprocessing's fork start method, os.fork, gunicorn --preload), on new workers of its own, and the
child exits normally. The pools live per calling thread (fastgru.model._thread_pool) and per stream;
the C core restarts a pool's workers after a fork (src_c/pool.c). Before it did, a forked child ran on
one thread and hung at exit, joining workers that only existed in the parent."""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

import fastgru

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform"),
    # Python 3.12+ warns about fork() in a process with threads: forking such a process is the point
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]
HAS_PROC = os.path.isdir("/proc/self/task")


def _threads() -> int:
    return len(os.listdir("/proc/self/task")) if HAS_PROC else -1


def _model_and_input():
    gru = fastgru.GRU(16, 96, num_layers=2, seed=0)
    x = np.random.default_rng(0).standard_normal((40, 3, 16)).astype(np.float32)
    return gru, x


def _child_result(gru, x):
    """What a child reports: its outputs and the threads it has after a 2-thread call."""
    output, h_n = gru(x, num_threads=2)
    return output, h_n, _threads()


def test_multiprocessing_fork_child_runs_a_model_whose_pool_started_in_the_parent():
    gru, x = _model_and_input()
    expected = gru(x, num_threads=2)  # starts this thread's pool of 2
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.starmap(_child_result, [(gru, x)] * 4)
    for output, h_n, threads in results:
        np.testing.assert_array_equal(output, expected[0])
        np.testing.assert_array_equal(h_n, expected[1])
        assert threads in (-1, 2)  # the child's own worker, started by its first call
    assert gru(x, num_threads=2)[1].tobytes() == expected[1].tobytes()  # the parent's pool still works


_FORK_SCRIPT = r"""
import os, sys, threading, time
import numpy as np
import fastgru

def threads():
    return len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else -1

gru = fastgru.GRU(16, 96, num_layers=2, seed=0)
x = np.random.default_rng(0).standard_normal((40, 3, 16)).astype(np.float32)
expected = gru(x, num_threads=2)                     # the main thread's pool of 2
uni = fastgru.GRU(16, 256, seed=1)
frames = np.random.default_rng(1).standard_normal((6, 2, 16)).astype(np.float32)
stream, reference = uni.stream(2, num_threads=2), uni.stream(2, num_threads=1)
for frame in frames[:3]:
    assert np.array_equal(stream.step(frame), reference.step(frame))
started, release = threading.Event(), threading.Event()

def busy():                                           # a thread with its own pool, alive at the fork
    gru(x, num_threads=2)
    started.set()
    release.wait()

side = threading.Thread(target=busy)
side.start()
started.wait()
time.sleep(0.05)                                      # the workers go to sleep, as in an idle parent
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read)
    before = threads()
    output, h_n = gru(x, num_threads=2)
    after = threads()
    same = np.array_equal(output, expected[0]) and np.array_equal(h_n, expected[1]) and all(
        np.array_equal(stream.step(f), reference.step(f)) for f in frames[3:])
    os.write(write, f"{same} {before} {after} {threads()}".encode())
    os.close(write)
    if sys.argv[1] == "os._exit":
        os._exit(0)
    sys.exit(0)                                       # interpreter shutdown destroys the pools
os.close(write)
release.set()
side.join()
deadline = time.monotonic() + 60
while not (done := os.waitpid(pid, os.WNOHANG))[0] and time.monotonic() < deadline:
    time.sleep(0.05)
if not done[0]:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    print("child hung")
    sys.exit(1)
print(os.read(read, 1000).decode(), done[1], gru(x, num_threads=2)[1].tobytes() == expected[1].tobytes())
"""


@pytest.mark.parametrize("exit_by", ["sys.exit", "os._exit"])
def test_os_fork_child_uses_new_workers_and_exits(exit_by, tmp_path):
    """In a fresh interpreter: the pool of the main thread, of a stream, and of a thread that still runs
    at the fork. In the child each works and starts its own worker, and the child's exit returns, also
    through interpreter shutdown (which destroys the pools, as a gunicorn worker's normal exit does)."""
    script = tmp_path / "fork.py"
    script.write_text(_FORK_SCRIPT)
    result = subprocess.run([sys.executable, str(script), exit_by], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    same, before, after, with_stream, status, parent_ok = result.stdout.split()
    assert same == "True" and status == "0" and parent_ok == "True", result.stdout
    if HAS_PROC:
        # the child starts with its one thread; the call starts one worker, the stream's pool another
        assert (int(before), int(after), int(with_stream)) == (1, 2, 3), result.stdout


_APP = '''
import os
import numpy as np
import fastgru

GRU = fastgru.GRU(16, 128, num_layers=2, seed=0)
X = np.random.default_rng(0).standard_normal((50, 2, 16)).astype(np.float32)
EXPECTED = GRU(X, num_threads=2)[1].tobytes()  # the master's pool starts here, before it forks workers


def app(environ, start_response):
    same = GRU(X, num_threads=2)[1].tobytes() == EXPECTED
    threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else -1
    body = f"{os.getpid()} {same} {threads}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def test_gunicorn_preload_workers_serve_and_shut_down(tmp_path):
    """gunicorn --preload imports the app (and runs the model) in the master, then forks the workers.
    Each worker answers with the master's numbers, on a worker thread of its own, and exits by itself
    on a graceful shutdown (the master kills a worker still running after --graceful-timeout)."""
    pytest.importorskip("gunicorn")
    (tmp_path / "app.py").write_text(_APP)
    log = tmp_path / "gunicorn.log"
    command = [sys.executable, "-m", "gunicorn", "--preload", "--workers", "2", "--bind", "127.0.0.1:0",
               "--graceful-timeout", "10", "--no-control-socket", "--worker-tmp-dir", str(tmp_path),
               "--error-logfile", str(log), "app:app"]
    master = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        address = None
        for _ in range(600):
            match = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", log.read_text() if log.exists() else "")
            if match and log.read_text().count("Booting worker") == 2:
                address = match.group(1)
                break
            assert master.poll() is None, log.read_text()
            time.sleep(0.1)
        assert address, log.read_text()
        answers = [urllib.request.urlopen(address, timeout=30).read().decode().split() for _ in range(8)]
    finally:
        master.send_signal(signal.SIGTERM)
        try:
            master.wait(timeout=60)
        except subprocess.TimeoutExpired:
            master.kill()
            raise
    text = log.read_text()
    assert all(same == "True" for _, same, _ in answers), answers
    if HAS_PROC:
        assert all(threads == "2" for _, _, threads in answers), answers
    workers = set(re.findall(r"Booting worker with pid: (\d+)", text))
    assert len(workers) == 2 and {pid for pid, _, _ in answers} <= workers
    assert "SIGKILL" not in text, text
    assert set(re.findall(r"Worker exiting \(pid: (\d+)\)", text)) == workers, text
