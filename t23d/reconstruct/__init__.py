"""Photo-to-3D: photometric training of the shared hash-grid field, evaluation, and export."""
