"""The only torch code of the library: networks and their registry, augmentations, ONNX export."""
