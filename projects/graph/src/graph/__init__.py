"""Graph neural networks: node classification on Cora, recommendations on MovieLens (torch-geometric)."""
