"""From examples to batches: tokenizers, the epoch pipeline (stage layouts, shuffling, sharding), padding and collation."""
