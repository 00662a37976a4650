"""Token-id prompts shared by both sides of the GPU benchmark (bench_engine and mlx_lm_bench.py):
a 1024-token prompt, a 42-token chat prompt and 16 prompts of 64 tokens, seeded.

usage: python make_prompts.py > prompts.json
"""
import json
import random

random.seed(1)
ids = lambda n: [random.randrange(200, 49000) for _ in range(n)]
print(json.dumps({"long": ids(1024), "chat": ids(42), "batch": [ids(64) for _ in range(16)]}))
