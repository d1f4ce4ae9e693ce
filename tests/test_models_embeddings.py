"""The sinusoidal time embedding (diffusion_edu.models.embeddings) that tells a noise predictor
which step t it is looking at. (That the U-Net's prediction depends on t: test_models_unet.py.)"""

import torch

from diffusion_edu.models.embeddings import sinusoidal_embedding


def test_time_embedding_distinguishes_t():
    emb = sinusoidal_embedding(torch.arange(0, 1001), 32)
    assert emb.shape == (1001, 32)
    # every pair of distinct t gets a distinct vector; neighbours are closer than far-apart t
    dist = torch.cdist(emb, emb)
    assert (dist + torch.eye(1001) * 1e9).min() > 1e-3
    assert dist[500, 501] < dist[500, 900]
