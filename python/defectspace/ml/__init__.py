"""The Siamese embedder (the ``ml`` extra: torch, safetensors): encoder, checkpoints, contrastive
training, held-out evaluation and figures. Nothing outside this folder, the predictors'
``snn`` descriptors and the command line imports torch.
"""
