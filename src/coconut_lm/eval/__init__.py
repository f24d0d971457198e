"""Evaluation: generate, extract and score answers per thought count; the output folders of the commands."""
