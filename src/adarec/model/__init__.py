"""Model parts: encoder, losses, and the models built from them."""
