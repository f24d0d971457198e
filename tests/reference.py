from coconut_lm.reference import RefForward, RefGeneration, reference_forward, reference_generate  # noqa: F401
