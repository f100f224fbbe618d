"""The Siamese embedder (the ``ml`` extra: torch, safetensors): the encoder (:mod:`.encoder`; its
settings and input channels in :mod:`.config`, importable without torch), the embedder and its
checkpoint (:mod:`.embedder`), contrastive training (:mod:`.training`), held-out evaluation
(:mod:`.evaluation`) and figures (:mod:`.plotting`). The core never imports this package.
"""
