"""Neural fields: the multi-resolution hash-grid encoding, small MLPs, the NeRF field and backgrounds."""
