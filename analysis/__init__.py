"""From embeddings to answers: clustering, classification, invariance (numpy in, numbers and figures out)."""
