"""The recipe: the methods (each one's sequence layout at stage k and its decoding), the curriculum, the special tokens."""
