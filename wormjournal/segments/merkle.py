"""RFC 6962 Merkle tree hashing, domain-separated (0x00 leaves, 0x01 nodes)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from .. import native

_sha256 = hashlib.sha256
# The C extension's bulk SHA-256 (wormjournal.native), None for the Python path: the same hashes.
_bulk: Any = native.module if native.SHA else None


def split_hashes(data: bytes) -> list[bytes]:
    """``data`` (whole 32-byte hashes) as a list of hashes."""
    return [data[i : i + 32] for i in range(0, len(data), 32)]


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
    if _bulk is not None and len(level) > 2:
        return _bulk.block_roots(b"".join(level), 1 << (len(level) - 1).bit_length())  # type: ignore[no-any-return]
    nodes = list(level)
    while len(nodes) > 1:
        pairs = iter(nodes)
        # zip(it, it) yields (nodes[0], nodes[1]), (nodes[2], nodes[3]), ... and drops an odd last node.
        paired = [_sha256(b"\x01" + left + right).digest() for left, right in zip(pairs, pairs, strict=False)]
        if len(nodes) % 2:
            paired.append(nodes[-1])
        nodes = paired
    return nodes[0]


def root_of_packed(leaf_hashes: bytes) -> bytes:
    """:func:`root_from_leaf_hashes` of concatenated leaf hashes (32 bytes each): one call of the C extension."""
    n = len(leaf_hashes) // 32
    if _bulk is not None and n > 2 and len(leaf_hashes) == 32 * n:
        return _bulk.block_roots(leaf_hashes, 1 << (n - 1).bit_length())  # type: ignore[no-any-return]
    return root_from_leaf_hashes(split_hashes(leaf_hashes))


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of RFC 6962, section 2.1, over the leaf data ``leaves``."""
    return root_from_leaf_hashes([_sha256(b"\x00" + d).digest() for d in leaves])


def bulk() -> bool:
    """Whether the C extension's bulk SHA-256 is in use (else the Python path: the same hashes)."""
    return _bulk is not None


def packed_block_roots(data: bytes | memoryview, block: int) -> tuple[bytes, bytes]:
    """For leaf data of 32 bytes each, concatenated (a segment's event hashes in storage order): the block
    roots of :func:`block_roots`, concatenated, and the MTH of all the leaves, which is the MTH over the
    block roots (FORMAT.md, section 5). One call of the C extension, without a Python object per leaf.

    Raises ValueError unless ``data`` is whole 32-byte values and ``block`` a power of two.
    """
    if len(data) % 32 or block < 1 or block & (block - 1):
        raise ValueError(f"not whole 32-byte leaves ({len(data)} bytes), or block {block} not a power of two")
    if _bulk is not None:
        return _bulk.merkle_blocks(data, block)  # type: ignore[no-any-return]
    raw = bytes(data)
    leaves = [_sha256(b"\x00" + raw[i : i + 32]).digest() for i in range(0, len(raw), 32)]
    roots = block_roots(leaves, block)
    return b"".join(roots), root_from_leaf_hashes(roots)


def block_roots(leaf_hashes: Sequence[bytes], block: int) -> list[bytes]:
    """The MTH of each run of ``block`` leaves (a power of two; the last run may be shorter).

    Each run starts at a multiple of ``block``, so it is a complete subtree of the tree
    over all the leaves, and ``root_from_leaf_hashes(block_roots(...))`` is the root of
    that tree: RFC 6962 splits n leaves where it splits their runs.
    """
    if block < 1 or block & (block - 1):
        raise ValueError(f"block must be a power of two, not {block}")
    if _bulk is not None and len(leaf_hashes) > 2:
        return split_hashes(_bulk.block_roots(b"".join(leaf_hashes), block))
    return [root_from_leaf_hashes(leaf_hashes[i : i + block]) for i in range(0, len(leaf_hashes), block)]


def block_roots_of(leaf_hashes: bytes, block: int) -> bytes:
    """:func:`block_roots` of concatenated leaf hashes, concatenated."""
    if _bulk is not None and len(leaf_hashes) > 64:
        if block < 1 or block & (block - 1):
            raise ValueError(f"block must be a power of two, not {block}")
        return _bulk.block_roots(leaf_hashes, block)  # type: ignore[no-any-return]
    return b"".join(block_roots(split_hashes(leaf_hashes), block))


# -- proofs (RFC 6962 section 2.1.1 and 2.1.2; verification as in RFC 9162 section 2.1.3 and 2.1.4) ------------


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def inclusion_path(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(m, D[n]): the audit path of leaf ``index`` among ``leaf_hashes``, leaf side first."""
    n = len(leaf_hashes)
    if not 0 <= index < n:
        raise ValueError(f"leaf {index} is not in a tree of {n}")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return inclusion_path(leaf_hashes[:k], index) + [root_from_leaf_hashes(leaf_hashes[k:])]
    return inclusion_path(leaf_hashes[k:], index - k) + [root_from_leaf_hashes(leaf_hashes[:k])]


def root_from_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes | None:
    """The root that leaf hash ``leaf`` at ``index`` with ``path`` gives in a tree of ``size``; None if
    the path has the wrong length for that position."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def consistency_path(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(m, D[n]): that the tree of the first ``old_size`` leaves is a prefix of the whole."""
    n = len(leaf_hashes)
    if not 0 < old_size <= n:
        raise ValueError(f"no consistency proof from size {old_size} to {n}")

    def subproof(m: int, leaves: Sequence[bytes], whole: bool) -> list[bytes]:
        size = len(leaves)
        if m == size:
            return [] if whole else [root_from_leaf_hashes(leaves)]
        k = _split(size)
        if m <= k:
            return subproof(m, leaves[:k], whole) + [root_from_leaf_hashes(leaves[k:])]
        return subproof(m - k, leaves[k:], False) + [root_from_leaf_hashes(leaves[:k])]

    return subproof(old_size, leaf_hashes, True)


def consistency_path_from(old_frontier: Sequence[bytes], old_size: int, new_leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) from the frontier of the old tree (m leaves) and the leaf hashes after it, without the
    leaves before m: the proof's nodes over leaves before m are subtrees of the old tree's frontier (RFC 6962's
    left siblings on the way down to leaf m), the others lie wholly after m."""
    n = old_size + len(new_leaves)
    if not 0 < old_size <= n or len(old_frontier) != old_size.bit_count():
        raise ValueError(f"no consistency proof from size {old_size} to {n} with this frontier")
    known: dict[tuple[int, int], bytes] = {}
    start = 0
    for bit, node in zip((b for b in range(old_size.bit_length() - 1, -1, -1) if old_size >> b & 1),
                         old_frontier, strict=True):
        known[(start, start + (1 << bit))] = node
        start += 1 << bit

    def mth(lo: int, hi: int) -> bytes:
        if lo >= old_size:
            return root_from_leaf_hashes(new_leaves[lo - old_size : hi - old_size])
        return known[(lo, hi)]  # never straddles m: PROOF's subtrees end at or before it, or start after it

    def subproof(m: int, lo: int, hi: int, whole: bool) -> list[bytes]:
        if m == hi - lo:
            return [] if whole else [mth(lo, hi)]
        k = _split(hi - lo)
        if m <= k:
            return subproof(m, lo, lo + k, whole) + [mth(lo + k, hi)]
        return subproof(m - k, lo + k, hi, False) + [mth(lo, lo + k)]

    return subproof(old_size, 0, n, True)


def consistent(old_size: int, old_root: bytes, new_size: int, new_root: bytes, path: Sequence[bytes]) -> bool:
    """Whether ``path`` proves the tree (old_size, old_root) is a prefix of (new_size, new_root)."""
    if not 0 < old_size <= new_size:
        return False
    if old_size == new_size:
        return not path and old_root == new_root
    path = list(path)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node of the proof
        path = [old_root] + path
    if not path:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


# -- the frontier: a tree's maximal perfect subtrees (FORMAT.md, section 4) ----------------------------------


def frontier_push(frontier: Sequence[bytes], size: int, leaf: bytes) -> list[bytes]:
    """The frontier of the tree of ``size + 1`` leaves, from that of ``size`` leaves and the new leaf hash.

    A tree of n leaves is the RFC 6962 tree over its perfect subtrees of sizes the set bits
    of n, largest (leftmost) first; their roots, left to right, are its frontier.
    """
    if len(frontier) != size.bit_count():
        raise ValueError(f"a frontier of {size} leaves has {size.bit_count()} roots, not {len(frontier)}")
    out = list(frontier) + [leaf]
    n = size
    while n & 1:  # each trailing set bit of the old size is a subtree the same size as the new one: merge
        right = out.pop()
        out[-1] = node_hash(out[-1], right)
        n >>= 1
    return out


def frontier_root(frontier: Sequence[bytes]) -> bytes:
    """MTH of the tree whose frontier this is: each perfect subtree is the left child of the tree of the
    subtrees after it, so the root folds from the right."""
    if not frontier:
        return _sha256(b"").digest()
    root = frontier[-1]
    for left in reversed(frontier[:-1]):
        root = node_hash(left, root)
    return root


def frontier_of(leaf_hashes: Sequence[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for i, leaf in enumerate(leaf_hashes):
        out = frontier_push(out, i, leaf)
    return out
