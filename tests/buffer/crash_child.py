"""Child for the kill -9 loop: appends and acknowledges at random, printing each commit that
returned ("C seq" for an append, "A seq" for an acknowledgement) and flushing, until killed.
"a seq" is printed before an acknowledgement is committed: a kill between the commit and the
"A" line leaves an ack whose outcome the parent cannot know (either is correct)."""

from __future__ import annotations

import random
import sys

from agent.buffer import Ring, SealedBatch

directory, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
ring = Ring.open(directory, max_bytes=1 << 30, min_free_bytes=0)
print("OPEN", flush=True)
unacked = [b.seq for b in ring.unacked()]
while True:
    if unacked and rng.random() < 0.4:
        seqs = rng.sample(unacked, min(len(unacked), rng.randint(1, 3)))
        for seq in seqs:
            print(f"a {seq}", flush=True)
            ring.ack(seq)
        ring.commit()
        for seq in seqs:
            unacked.remove(seq)
            print(f"A {seq}", flush=True)
    else:
        batch = [SealedBatch(ring.allocate_seq(), rng.randbytes(rng.randint(50, 3000)), 7, 0, 1)
                 for _ in range(rng.randint(1, 3))]
        ring.commit(batch)
        for b in batch:
            unacked.append(b.seq)
            print(f"C {b.seq}", flush=True)
