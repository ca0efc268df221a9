"""The concept audit: activations -> SAE features -> concept hypotheses with statistics."""
