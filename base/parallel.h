// A small persistent thread pool for data-parallel loops over all cores.
//
// ParallelFor splits [begin, end) into contiguous chunks, one per worker, so a given chunk
// boundary depends only on (begin, end, NumThreads()); kernels that need bitwise
// thread-count independence must reduce in a fixed order themselves (e.g. per-fixed-size-slice
// partials summed in index order).
#pragma once

#include <cstdint>
#include <functional>

namespace tributary {

// Number of worker threads (hardware concurrency unless SetNumThreads was called). >= 1.
int NumThreads();
// Resizes the pool (tests use this to check thread-count independence). n <= 0 restores the default.
void SetNumThreads(int n);

// Calls fn(chunk_begin, chunk_end) on disjoint chunks covering [begin, end), in parallel, and
// waits for all of them. Chunks are at least `min_chunk` long (small ranges run inline).
// Not re-entrant: a nested call runs serially on the calling thread.
void ParallelFor(int64_t begin, int64_t end, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn);

// Calls fn(task) for task in [0, num_tasks) spread over the pool; waits for all.
void ParallelTasks(int64_t num_tasks, const std::function<void(int64_t)>& fn);

}  // namespace tributary
