"""Witnesses (FORMAT.md 8b): the C2SP tlog-witness service (:mod:`.service`) and the writer's client that submits
heads and checkpoints to witnesses and stores their cosignatures (:mod:`.client`)."""
