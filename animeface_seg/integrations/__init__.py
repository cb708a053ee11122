"""Front-ends beyond the command line (ComfyUI node pack, Ray Data engine, watch mode), each thin over the engine and batch layers."""
