"""Atomic output: the temporaries a killed writer leaves are removed by the next write to the same
path, and nothing else is: not another path's, not a live writer's, not a folder the user made."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from koqa.files import atomic_path

REPO = Path(__file__).resolve().parents[1]
# Writes a directory output atomically in another process; ``killed`` dies by SIGKILL inside the
# block, any other content waits (holding the write open) until a line arrives on stdin.
WRITER = """
import os, signal, sys
from pathlib import Path
from koqa.files import atomic_path

with atomic_path(Path(sys.argv[1])) as tmp:
    tmp.mkdir()
    (tmp / "part-0").write_text(sys.argv[2])
    print("writing", flush=True)
    if sys.argv[2] == "killed":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.stdin.readline()
"""


def _writer(path: Path, content: str) -> subprocess.Popen:
    """A writer of ``path`` in another process, started and inside its atomic block."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), content],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout.readline() == "writing\n"
    return process


def _write(path: Path, content: str) -> None:
    with atomic_path(path) as tmp:
        tmp.mkdir()
        (tmp / "part-0").write_text(content)


def test_a_killed_writers_temporary_is_removed_by_the_next_write_of_the_same_path(
    tmp_path: Path,
) -> None:
    target = tmp_path / "shards" / "train"
    assert _writer(target, "killed").wait() == -signal.SIGKILL
    (left,) = os.listdir(target.parent)
    assert left.startswith(".train.")  # the killed writer's temporary, and no output
    _write(target, "second")
    assert os.listdir(target.parent) == ["train"]
    assert (target / "part-0").read_text() == "second"


def test_live_temporaries_other_paths_and_user_folders_are_kept(tmp_path: Path) -> None:
    folder = tmp_path / "shards"
    assert _writer(folder / "train_extra", "killed").wait() == -signal.SIGKILL
    (folder / ".train_extra.0000000a").mkdir()  # as left by a writer killed before it locked
    (folder / ".train.bak").mkdir()
    (folder / ".train.bak" / "notes.txt").write_text("mine")
    live = _writer(folder / "train", "live")  # another process writing the same path right now
    before = set(os.listdir(folder))
    assert len(before) == 4
    _write(folder / "train", "here")
    assert set(os.listdir(folder)) == before | {"train"}
    live.communicate("go\n")
    assert live.returncode == 0
    assert (folder / "train" / "part-0").read_text() == "live"  # the later writer wins, whole
    _write(folder / "train_extra", "again")  # its own next write removes what the kill left
    assert sorted(os.listdir(folder)) == [".train.bak", "train", "train_extra"]
