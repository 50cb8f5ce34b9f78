"""Writer for the power-cut loop: a zygote that imports the buffer once and forks one writer per
cycle (a Python start costs ~0.5 s here; a fork ~10 ms), so CI can afford hundreds of cuts.

Commands on stdin: `run SEED` forks a writer and answers `PID n`; `wait PID` reaps it (after the
parent killed it) and answers `EXIT PID`. The writer opens the buffer through `Store` and prints:

- `OPEN {json}`: what the start found (epoch, boot count, the gap's reference `last_before_start`,
  the batches present, whether a damaged file was recovered and what `buffer_lost` said);
- `c SEQ T` before a commit of batch SEQ whose readings end at T ms, `C SEQ` once it returned with
  the store on disk (`M SEQ`: it returned while the store was in memory: not durable by contract);
- `a SEQ` before an acknowledgement is committed, `A SEQ` once that commit returned;

each line with one write(2) (atomic on a pipe), until it is killed.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time

from agent.buffer.ring import SealedBatch
from agent.buffer.store import Store


def emit(line: str) -> None:
    os.write(1, (line + "\n").encode())


def writer(directory: str, seed: int) -> None:
    rng = random.Random(seed)
    started = time.monotonic()
    store = Store(directory, max_bytes=1 << 30, min_free_bytes=0)
    lost = [n.__dict__ for n in store.take_notices() if type(n).__name__ == "BufferLost"]
    present = [b.seq for b in store.unacked()]
    emit("OPEN " + json.dumps({"epoch": store.epoch, "boot": store.boot_count, "on_disk": store.on_disk,
                               "last_before_start": store.last_before_start, "recovered": store.recovery.happened,
                               "lost": lost, "present": present, "quarantined": store.stats().quarantined,
                               "open_ms": round((time.monotonic() - started) * 1000)},
                              default=str))
    unacked = list(present)
    last_t = max(int(time.time() * 1000), (store.last_before_start or 0) + 1)
    while True:
        if unacked and rng.random() < (0.4 if len(unacked) < 300 else 0.7):  # a backlog that stays bounded
            seqs = rng.sample(unacked, min(len(unacked), rng.randint(1, 3)))
            for seq in seqs:
                emit(f"a {seq}")
                store.ack(seq)
            store.commit()
            for seq in seqs:
                unacked.remove(seq)
                emit(f"A {seq}")
            continue
        batches = []
        for _ in range(rng.randint(1, 3)):
            _, seq = store.allocate()
            last_t = max(last_t + 1, int(time.time() * 1000))
            batches.append(SealedBatch(seq, rng.randbytes(rng.randint(50, 3000)), 7, last_t - 1, last_t))
            emit(f"c {seq} {last_t}")
        store.commit(batches)
        for b in batches:
            unacked.append(b.seq)
            emit(f"{'C' if store.on_disk else 'M'} {b.seq}")


def main() -> None:
    directory = sys.argv[1]
    emit("ZYGOTE")
    for line in sys.stdin:
        words = line.split()
        if words[0] == "run":
            pid = os.fork()
            if pid == 0:
                try:
                    writer(directory, int(words[1]))
                except BaseException as exc:  # the parent fails the test on this line
                    emit(f"ERROR {exc!r}")
                finally:
                    os._exit(1)
            emit(f"PID {pid}")
        elif words[0] == "wait":
            os.waitpid(int(words[1]), 0)
            emit(f"EXIT {words[1]}")


if __name__ == "__main__":
    main()
