"""The paper's analysis: path categories, latent search values, plots."""
