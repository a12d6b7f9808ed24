// The CUDA half of the shim, built by build.rs as its own shared object (libugatit_cuda.so) and
// opened by src/distributed/nccl.rs only after libtorch_cuda.so is loaded, so that CPU processes
// never map either. It creates NCCL process groups (the collectives on them run through
// csrc/c10d.cpp, which sees any c10d::Backend alike) and reads the CUDA caching allocator's
// statistics.
#define USE_C10D_NCCL
#include "c10d.h"

#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <chrono>
#include <cstring>
#include <exception>

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

}  // extern "C"
