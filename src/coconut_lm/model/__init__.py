"""The mechanism: CoconutLM's multi-pass forward and generation over a backbone, its KV buffer, folder format, compiled blocks and a slow reference."""
