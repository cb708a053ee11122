"""The batch layer: finding input files, naming outputs, streaming them through the engine, writing PNGs."""
