"""CLIP on captioned scenes with open-clip-torch: contrastive training, zero-shot classification, image search."""
