// Type-checked with consumer.ts (tsc --noEmit -p __test__/types, run by __test__/types.test.mjs):
// fields this engine adds to the original shapes are typed, optional, and narrow as documented.
import { Engine } from 'mlx-serving';
import type { VisionGeneratorChunk } from 'mlx-serving';

export async function visionChunkFields(engine: Engine): Promise<void> {
  const gen = engine.createVisionGenerator({ model: 'qwen2-vl', prompt: 'what is this?', image: { source: '/tmp/cat.png' } });
  for await (const c of gen) {
    const vc: VisionGeneratorChunk = c;
    if (vc.type === 'token') {
      const id: number | undefined = vc.tokenId;
      const last: boolean | undefined = vc.isFinal;
      void id; void last;
    } else {
      const why: 'stop' | 'eos' | 'length' | 'cancelled' | undefined = vc.stats.finishReason;
      const model: string | undefined = vc.stats.modelId;
      const total: number = vc.stats.totalTime;
      void why; void model; void total;
    }
  }
  // the original chunk shape still type-checks
  const original: VisionGeneratorChunk = { type: 'token', token: 'a', logprob: -0.1 };
  void original;
}
