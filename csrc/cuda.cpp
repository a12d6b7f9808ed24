// The CUDA half of the shim, built by build.rs as its own shared object (libugatit_cuda.so) and
// opened by src/distributed/nccl.rs only after libtorch_cuda.so is loaded, so that CPU processes
// never map either. It creates NCCL process groups (the collectives on them run through
// csrc/c10d.cpp, which sees any c10d::Backend alike), reads the CUDA caching allocator's
// statistics, and captures and replays CUDA graphs.
#define USE_C10D_NCCL
#include "c10d.h"

#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <chrono>
#include <cstring>
#include <exception>
#include <optional>

// A CUDA graph, and while it captures, the stream that was current before.
struct UgatitGraph {
  at::cuda::CUDAGraph graph;
  std::optional<c10::cuda::CUDAStream> previous;
};

// `to` waits for the work queued on `from` so far.
static void wait_for(c10::cuda::CUDAStream from, c10::cuda::CUDAStream to) {
  at::cuda::CUDAEvent event;
  event.record(from);
  event.block(to);
}

extern "C" {

// An NCCL group of `size` ranks over `store`, this rank on GPU `device`.
char* ugatit_nccl_new(UgatitStore* store, int rank, int size, int device, int64_t timeout_ms, UgatitGroup** out) {
  try {
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = std::chrono::milliseconds(timeout_ms);
    auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(store->store, rank, size, options);
    *out = new UgatitGroup{nccl};
    return nullptr;
  } catch (const std::exception& e) {
    return strdup(e.what());
  }
}

// The caching allocator's peak allocated and reserved bytes on GPU `device` since the last reset
// (all pools); `reset` starts a new peak after reading.
char* ugatit_cuda_memory_peaks(int device, bool reset, int64_t* allocated, int64_t* reserved) {
  try {
    auto index = static_cast<c10::DeviceIndex>(device);
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
    auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    *allocated = stats.allocated_bytes[all].peak;
    *reserved = stats.reserved_bytes[all].peak;
    if (reset) c10::cuda::CUDACachingAllocator::resetPeakStats(index);
    return nullptr;
  } catch (const std::exception& e) {
    return strdup(e.what());
  }
}

// A new, empty graph.
char* ugatit_graph_new(UgatitGraph** out) {
  try {
    *out = new UgatitGraph();
    return nullptr;
  } catch (const std::exception& e) {
    return strdup(e.what());
  }
}

void ugatit_graph_free(UgatitGraph* graph) { delete graph; }

// Starts capturing what this thread queues on the current GPU. A capture cannot run on the
// default stream, so it runs on a side stream that first waits for the default stream's work;
// allocations go to the graph's private memory pool. The blocks the caching allocator keeps
// from earlier work (the warm-up's) go back to the driver first, so that the graph's pool takes
// their place instead of adding to them: a card holds one step's working memory, not two.
char* ugatit_graph_capture_begin(UgatitGraph* graph) {
  try {
    c10::cuda::CUDACachingAllocator::emptyCache();
    auto previous = c10::cuda::getCurrentCUDAStream();
    auto side = c10::cuda::getStreamFromPool(false, previous.device_index());
    wait_for(previous, side);
    c10::cuda::setCurrentCUDAStream(side);
    graph->previous = previous;
    try {
      graph->graph.capture_begin();
    } catch (...) {
      c10::cuda::setCurrentCUDAStream(previous);
      graph->previous.reset();
      throw;
    }
    return nullptr;
  } catch (const std::exception& e) {
    return strdup(e.what());
  }
}

// Ends the capture, whether or not what it captured was valid, and goes back to the stream that
// was current before it. On failure the CUDA error is cleared so that later work can run
// without the graph.
char* ugatit_graph_capture_end(UgatitGraph* graph) {
  if (!graph->previous) return strdup("no capture is under way");
  auto previous = *graph->previous;
  graph->previous.reset();
  char* error = nullptr;
  try {
    graph->graph.capture_end();
  } catch (const std::exception& e) {
    error = strdup(e.what());
  }
  auto side = c10::cuda::getCurrentCUDAStream();
  c10::cuda::setCurrentCUDAStream(previous);
  try {
    wait_for(side, previous);
  } catch (const std::exception& e) {
    if (error == nullptr) error = strdup(e.what());
  }
  if (error != nullptr) (void)cudaGetLastError();
  return error;
}

// Launches the captured work on the current stream.
char* ugatit_graph_replay(UgatitGraph* graph) {
  try {
    graph->graph.replay();
    return nullptr;
  } catch (const std::exception& e) {
    return strdup(e.what());
  }
}

}  // extern "C"
