"""WebDataset shards: packing folders into shards, their index, and the streaming dataset."""
