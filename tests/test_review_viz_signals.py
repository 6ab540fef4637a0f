"""Review of the viz CLI's signal handling (issue 14 hardening): signals delivered at exact
moments of a real run's output staging, in a child process, by a real ``signal.raise_signal``
from an audit hook (the moment a file system call starts), so no timing decides the outcome."""

import subprocess
import textwrap
from pathlib import Path

import pytest
from test_viz_hardening import FOREGROUND

ROOT = Path(__file__).resolve().parents[1]
# Each child starts with SIGINT at its default, as a terminal's foreground job (FOREGROUND): a test
# run started in the background (``cmd &``, SIGINT ignored) made every child ignore the SIGINT
# these tests raise, and 8 of them failed.

#: A child that stages one job under the CLI's signal handlers, is interrupted while the job is
#: staged, and gets a second signal as the cleanup starts removing files (a user pressing
#: Ctrl-C twice, or a supervisor following SIGINT with SIGTERM). argv: out dir, first, second.
SECOND_SIGNAL_DURING_CLEANUP = textwrap.dedent(
    """
    import signal, sys
    from pathlib import Path
    from viz import cli, staging

    out, first, second = Path(sys.argv[1]), signal.Signals[sys.argv[2]], signal.Signals[sys.argv[3]]
    armed = False

    def second_signal_at_first_removal(event, args):
        global armed
        if armed and event in ("os.remove", "os.rmdir"):
            armed = False
            signal.raise_signal(second)

    sys.addaudithook(second_signal_at_first_removal)
    try:
        with cli._signals_as_exceptions():
            with staging.OutputStaging(out) as run:
                (run.claim("job") / "channel.png").write_bytes(b"half written")
                armed = True
                signal.raise_signal(first)
    except (KeyboardInterrupt, cli.Terminated) as exc:
        print(type(exc).__name__)
    """
)


@pytest.mark.parametrize("first, second", [("SIGINT", "SIGINT"), ("SIGTERM", "SIGINT"), ("SIGINT", "SIGTERM")])
def test_a_second_signal_during_the_cleanup_still_leaves_nothing_in_out(tmp_path, first, second):
    """Ctrl-C at any moment leaves nothing in --out: also a second one while the first one's
    cleanup is removing the staged files (it used to raise there and leave the staging dir)."""
    out = tmp_path / "made" / "out"  # created by the run, so removed by its cleanup
    child = subprocess.run([*FOREGROUND, "-c", SECOND_SIGNAL_DURING_CLEANUP, str(out), first, second],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() in ("KeyboardInterrupt", "Terminated")
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert left == [], left


#: A child that records a signal whose exception Python swallows (raised inside ``__del__``)
#: after the run's last checkpoint (the commit), inside the CLI's signal block. argv: signal.
SWALLOWED_AFTER_THE_LAST_CHECKPOINT = textwrap.dedent(
    """
    import signal, sys
    from viz import cli

    signum = signal.Signals[sys.argv[1]]

    class SignalsWhenCollected:
        def __del__(self):
            signal.raise_signal(signum)

    try:
        with cli._signals_as_exceptions():
            SignalsWhenCollected()  # its exception is 'ignored': Python goes on
        print("finished")
    except (KeyboardInterrupt, cli.Terminated) as exc:
        print(type(exc).__name__)
    print(signal.getsignal(signum) is (signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL))
    """
)


@pytest.mark.parametrize("signum, exception", [("SIGINT", "KeyboardInterrupt"), ("SIGTERM", "Terminated")])
def test_a_swallowed_signal_after_the_last_checkpoint_still_stops_the_run(signum, exception):
    """The end of the block is the run's last checkpoint: a signal Python swallowed after the
    commit (a ``__del__`` while the summary prints) still exits 130/143, not 0; the previous
    handler is back and nothing is reported on stderr."""
    child = subprocess.run([*FOREGROUND, "-c", SWALLOWED_AFTER_THE_LAST_CHECKPOINT, signum],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == [exception, "True"]
    assert child.stderr == ""


#: A child whose main thread runs under the CLI's signal block and records a swallowed SIGINT
#: while another thread runs the block too (``viz.cli.main`` called from a worker thread).
A_THREAD_RUNS_THE_BLOCK_MEANWHILE = textwrap.dedent(
    """
    import signal, threading
    from viz import cli, staging

    class SignalsWhenCollected:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)

    def other_run():
        try:
            with cli._signals_as_exceptions():
                pass
            print("thread finished")
        except BaseException as exc:
            print("thread", type(exc).__name__)

    try:
        with cli._signals_as_exceptions():
            SignalsWhenCollected()  # recorded, its exception swallowed
            worker = threading.Thread(target=other_run)
            worker.start()
            worker.join()
            staging.check_interrupted()  # the main run's next checkpoint
            print("main finished")
    except KeyboardInterrupt:
        print("main KeyboardInterrupt")
    """
)


def test_a_run_in_another_thread_neither_forgets_nor_takes_the_main_runs_signal():
    """The block in a non-main thread installs no handler, so it must leave the main thread's
    recorded signal alone: it used to forget it (the interrupted main run went on and committed),
    and with the block's end as a checkpoint it would have raised it in the wrong run."""
    child = subprocess.run([*FOREGROUND, "-c", A_THREAD_RUNS_THE_BLOCK_MEANWHILE],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, child.stderr
    assert child.stdout.splitlines() == ["thread finished", "main KeyboardInterrupt"]


#: A child whose run is interrupted while it enters the output staging: at the ``nth`` start of
#: a file system call ``event`` (creating --out's folders, the staging dir, its lock, the search
#: for stale staging dirs). argv: out dir, event, nth.
SIGNAL_WHILE_ENTERING = textwrap.dedent(
    """
    import signal, sys
    from pathlib import Path
    from viz import cli, staging

    out, event, left = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    armed = False

    def signal_at_the_event(name, args):
        global armed, left
        if armed and name == event:
            left -= 1
            if left == 0:
                armed = False
                signal.raise_signal(signal.SIGINT)

    sys.addaudithook(signal_at_the_event)
    try:
        with cli._signals_as_exceptions():
            armed = True
            with staging.OutputStaging(out) as run:
                print("entered")
    except KeyboardInterrupt:
        print("KeyboardInterrupt")
    """
)


@pytest.mark.parametrize("event, nth", [("os.mkdir", 2), ("tempfile.mkstemp", 1), ("fcntl.flock", 1), ("os.mkdir", 3), ("os.scandir", 1)])
def test_a_signal_while_the_staging_is_entered_leaves_nothing(tmp_path, event, nth):
    """Ctrl-C at any moment leaves nothing in --out: also while the run creates --out's folders,
    its staging dir and lock (it used to leave a staging dir without a lock, which no later run
    removes as stale, and the folders it had created)."""
    out = tmp_path / "made" / "out"
    child = subprocess.run([*FOREGROUND, "-c", SIGNAL_WHILE_ENTERING, str(out), event, str(nth)],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["KeyboardInterrupt"]
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert left == [], left
