"""Clinical-note embeddings: a transformers encoder over the notes_to_embed mart, cached by note."""
