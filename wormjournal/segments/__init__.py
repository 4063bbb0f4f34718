"""The Parquet segment: schema, writer, reader, Merkle root, signed manifest and checkpoint."""
