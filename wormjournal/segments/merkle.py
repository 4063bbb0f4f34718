"""RFC 6962 Merkle tree hashing, domain-separated (0x00 leaves, 0x01 nodes)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def root_from_leaf_hashes(level: Sequence[bytes]) -> bytes:
    """MTH over leaves whose leaf hashes are given.

    Pairing bottom-up and promoting an odd last node unchanged gives the same
    root as RFC 6962's split at the largest power of two below n.
    """
    if not level:
        return _sha256(b"").digest()
    nodes = list(level)
    while len(nodes) > 1:
        pairs = iter(nodes)
        # zip(it, it) yields (nodes[0], nodes[1]), (nodes[2], nodes[3]), ... and drops an odd last node.
        paired = [_sha256(b"\x01" + left + right).digest() for left, right in zip(pairs, pairs)]
        if len(nodes) % 2:
            paired.append(nodes[-1])
        nodes = paired
    return nodes[0]


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of RFC 6962, section 2.1, over the leaf data ``leaves``."""
    return root_from_leaf_hashes([_sha256(b"\x00" + d).digest() for d in leaves])


def block_roots(leaf_hashes: Sequence[bytes], block: int) -> list[bytes]:
    """The MTH of each run of ``block`` leaves (a power of two; the last run may be shorter).

    Each run starts at a multiple of ``block``, so it is a complete subtree of the tree
    over all the leaves, and ``root_from_leaf_hashes(block_roots(...))`` is the root of
    that tree: RFC 6962 splits n leaves where it splits their runs.
    """
    if block < 1 or block & (block - 1):
        raise ValueError(f"block must be a power of two, not {block}")
    return [root_from_leaf_hashes(leaf_hashes[i : i + block]) for i in range(0, len(leaf_hashes), block)]
