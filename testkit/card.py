"""An SD card for the buffer, as a test can break it: an ext4 image on a loop device mounted with
`errors=remount-ro`. `fail()` drives it into the read-only state through ext4's own
`trigger_fs_error` (what a card with write errors does to a gateway: the kernel marks the file
system read-only, and it stays so until it is checked and mounted again); `repair()` is the operator's
fix: lazy unmount, e2fsck, a fresh mount at the same place. Needs root (mount, loop devices)."""

from __future__ import annotations

import subprocess
from pathlib import Path


class CardUnavailable(RuntimeError):
    """This machine refuses loop mounts (not root, no loop devices)."""


class Card:
    def __init__(self, image: Path, where: Path, mib: int = 64) -> None:
        self.image, self.where = image, where
        where.mkdir(parents=True, exist_ok=True)
        subprocess.run(["truncate", "-s", f"{mib}M", str(image)], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
        self._mount()

    def fail(self) -> None:
        """The card goes read-only under whoever is writing to it."""
        Path(f"/sys/fs/ext4/{self._device()}/trigger_fs_error").write_text("edge-agent test: card failure\n")

    def repair(self) -> None:
        """Check the file system and mount it again (open files keep pointing at the old mount)."""
        subprocess.run(["umount", "-l", str(self.where)], check=True)
        subprocess.run(["e2fsck", "-fy", str(self.image)], capture_output=True, check=False)
        self._mount()

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.where)], check=False, capture_output=True)

    def _mount(self) -> None:
        done = subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(self.image), str(self.where)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise CardUnavailable(f"cannot mount a test file system here: {done.stderr.strip()}")

    def _device(self) -> str:
        for line in Path("/proc/mounts").read_text().splitlines():
            source, target, *_ = line.split()
            if target == str(self.where):
                return Path(source).name
        raise CardUnavailable(f"{self.where} is not mounted")
