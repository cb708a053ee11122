"""``python -m animeface_seg`` runs the command line."""

from animeface_seg.cli import main

main()
