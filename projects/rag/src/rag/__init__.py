"""rag: retrieval-augmented question answering over a folder of documents."""
