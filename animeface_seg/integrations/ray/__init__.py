"""The Ray engine (``--engine ray``): the same batch run on a Ray cluster, with object storage in and out.

Importing this package does not import Ray; ``engine.require_ray`` says how to install it.
"""
