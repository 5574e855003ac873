"""Video and images around the model: probing, streaming decode and encode, photo loading, the fixed crop of
a clip (framing), the diagnostic overlays, the temporal warp-error meter and the anchors JSON. Nothing here
knows which motion source rendered a frame."""
