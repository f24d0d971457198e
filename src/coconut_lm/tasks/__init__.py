"""Tasks: generators (ProsQA, ProntoQA), converters (GSM8k) and the common example format."""
