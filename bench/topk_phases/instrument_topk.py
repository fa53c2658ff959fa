"""Writes a copy of cluster_select.cuh with clock64 stamps at the kernel's phase boundaries.

    python3 instrument_topk.py <cluster_select.cuh> <out/hylra/topk/cluster_select.cuh>

Thread 0 of every CTA records clock64() after each anchor line below (and %globaltimer plus
%smid at the start and end) into g_topk_phase_stamps[blockIdx.x][16], which topk_phases.cu
reads. Each anchor must occur exactly once: when cluster_select.cuh changes, this fails loudly
instead of stamping the wrong place.
"""
import pathlib
import sys

# (stamp index, phase that ends there, a line of cluster_select.cuh after which the stamp goes)
ANCHORS = [
    (0, None, "  const int tid = threadIdx.x;\n"),
    (1, "clear + arrive", "  auto cleared = cluster.barrier_arrive();\n  __syncthreads();\n"),
    (2, "load + histogram", "  __syncthreads();  // local_histogram complete\n  cluster.barrier_wait"),
    (3, "barrier wait", "  cluster.barrier_wait(std::move(cleared));\n"),
    (4, "histogram push", "  push_histogram(cluster_histogram, kFirstBins);\n"),
    (5, "cluster sync", "  cluster.sync();  // every CTA's additions into cluster_histogram are visible\n"),
    (6, "bucket find", "  // Candidates of the bucket go to the first CTA, which picks `take` of them.\n"),
    (7, "passes, classify + count", "  for (int c = kKeptChunks; c < chunks; ++c) count_chunk(classify_chunk(c));\n"),
    (8, "scan + cluster sync", "      cta_offsets[1] = static_cast<int>(earlier >> 32);\n    }\n  }\n  __syncthreads();\n"),
    (9, "write", "  for (int c = kKeptChunks; c < chunks; ++c) write_chunk(c, classify_chunk(c));\n"),
    (10, "padding", "  if (args.counts && rank == 0 && tid == 0) args.counts[row] = selected;\n"),
    (11, "barrier + refine (first CTA)", "      if (slots[i] >= 0) output.select(above_total + slots[i], positions[i]);\n"),
]

PRELUDE = r'''
// Instrumented by bench/topk_phases/instrument_topk.py: not for use outside topk_phases.
__device__ long long* g_topk_phase_stamps;  // [CTAs][16]: clock64 at stamps 0-11, 12 start ns, 13 end ns, 14 SM
__device__ __forceinline__ void topk_phase_stamp(int i) {
  if (threadIdx.x != 0 || g_topk_phase_stamps == nullptr) return;
  long long* const row = g_topk_phase_stamps + blockIdx.x * 16;
  row[i] = clock64();
  if (i == 0 || i >= 10) {
    unsigned long long ns;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(ns));
    row[i == 0 ? 12 : 13] = static_cast<long long>(ns);
  }
  if (i == 0) {
    unsigned sm;
    asm("mov.u32 %0, %%smid;" : "=r"(sm));
    row[14] = sm;
  }
}
'''


def main():
    source, target = map(pathlib.Path, sys.argv[1:3])
    text = source.read_text()
    for index, _, anchor in ANCHORS:
        count = text.count(anchor)
        if count != 1:
            sys.exit(f"instrument_topk.py: anchor of stamp {index} found {count} times in {source}: {anchor!r}")
        # Stamp 2 goes between the two anchored lines; the others after the whole anchor.
        cut = anchor.index("\n") + 1 if index == 2 else len(anchor)
        at = text.index(anchor) + cut
        text = text[:at] + f"  topk_phase_stamp({index});\n" + text[at:]
    text = text.replace("HYLRA_NAMESPACE_BEGIN\n", PRELUDE + "\nHYLRA_NAMESPACE_BEGIN\n", 1)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


if __name__ == "__main__":
    main()
