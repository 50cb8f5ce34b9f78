"""The durable ring buffer: sealed batches kept on disk until acknowledged, every loss counted."""

from agent.buffer.ring import CommitResult, Loss, Ring, RingStats, SealedBatch
from agent.buffer.schema import Recovery
from agent.buffer.spool import Spool
from agent.buffer.store import Store

__all__ = ["CommitResult", "Loss", "Recovery", "Ring", "RingStats", "SealedBatch", "Spool", "Store"]
