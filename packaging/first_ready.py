"""Time `edge-agent run` from spawn to READY=1 on its notify socket (sd_notify), for verify-emulated.sh.

usage: first_ready.py ROOT TIMEOUT COMMAND...  -- the socket is ROOT/tmp/notify.sock (the command sees
/tmp/notify.sock inside the chroot); prints the seconds and the agent's RSS 5 s after READY (under qemu-user
that includes the emulator), then stops the agent with SIGTERM (exit 0 expected).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    root, timeout, command = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
    path = root / "tmp" / "notify.sock"
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    os.chmod(path, 0o777)  # the agent runs as the service user
    sock.settimeout(timeout)
    log = open(root / "tmp" / "run.log", "wb")  # noqa: SIM115 - open for the child's lifetime
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        while True:
            message = sock.recv(4096)
            if message.startswith(b"READY=1"):
                break
        ready = time.monotonic() - start
    except TimeoutError:
        proc.kill()
        print((root / "tmp" / "run.log").read_text()[-3000:], file=sys.stderr)
        print(f"no READY=1 within {timeout:g} s", file=sys.stderr)
        return 1
    finally:
        sock.close()
    time.sleep(5)
    status = Path(f"/proc/{proc.pid}/status").read_text()
    rss = next((line.split(":")[1].strip() for line in status.splitlines() if line.startswith("VmRSS")), "?")
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=120)
    print(f"first READY=1 after {ready:.2f} s; RSS {rss} 5 s later; SIGTERM -> exit {code}")
    if code != 0:
        print((root / "tmp" / "run.log").read_text()[-3000:], file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
