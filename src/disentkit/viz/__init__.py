"""Seeing what a model learned: latent traversals and GIFs (:mod:`.traversal`), reconstruction
grids (:mod:`.reconstruction`), true-factor traversals (:mod:`.factors`), plots (:mod:`.plots`)
and the self-contained HTML run report (:mod:`.report`, ``write_report(run_dir)``).

Submodules are imported on use, so ``import disentkit.viz`` stays cheap.
"""
