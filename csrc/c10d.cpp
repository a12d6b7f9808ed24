// c10d for the distributed trainer (src/distributed/): libtorch's TCPStore for rendezvous,
// ProcessGroupGloo for CPU ranks, and the collectives the trainer runs on any backend (Gloo's
// here or NCCL's from csrc/cuda.cpp). The same C conventions as shim.cpp: handles are opaque
// pointers, and a failing call returns a heap-allocated message (freed by ugatit_free_message).
#define USE_C10D_GLOO
#include "c10d.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstring>
#include <exception>
#include <memory>

namespace {

char* message(const std::exception& e) {
  return strdup(e.what());
}

std::chrono::milliseconds millis(int64_t ms) {
  return std::chrono::milliseconds(ms);
}

}  // namespace

extern "C" {

// A TCPStore at host:port: the server (rank 0), which waits until `world` clients have joined,
// or a client, which retries connecting until `timeout_ms` passes.
char* ugatit_store_new(const char* host, int port, bool is_server, int world, int64_t timeout_ms, UgatitStore** out) {
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(port);
    options.isServer = is_server;
    options.numWorkers = world;
    options.waitWorkers = true;
    options.timeout = millis(timeout_ms);
    *out = new UgatitStore{c10::make_intrusive<c10d::TCPStore>(std::string(host), options)};
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  }
}

void ugatit_store_free(UgatitStore* store) {
  delete store;
}

char* ugatit_store_set(UgatitStore* store, const char* key, const uint8_t* data, size_t len) {
  try {
    store->store->set(std::string(key), std::vector<uint8_t>(data, data + len));
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  }
}

// The value of `key`, waiting for it up to the store's timeout; `*data` is malloc'ed and is
// released with ugatit_free_message.
char* ugatit_store_get(UgatitStore* store, const char* key, uint8_t** data, size_t* len) {
  try {
    const auto value = store->store->get(std::string(key));
    *len = value.size();
    *data = static_cast<uint8_t*>(malloc(value.empty() ? 1 : value.size()));
    std::memcpy(*data, value.data(), value.size());
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  }
}

// Adds `delta` to the counter `key` (created at 0), returning the new value.
char* ugatit_store_add(UgatitStore* store, const char* key, int64_t delta, int64_t* value) {
  try {
    *value = store->store->add(std::string(key), delta);
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  }
}

// Whether `key` has been set, without waiting.
char* ugatit_store_check(UgatitStore* store, const char* key, bool* present) {
  try {
    *present = store->store->check({std::string(key)});
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  }
}

// A Gloo process group over `store`, on the interface GLOO_SOCKET_IFNAME names or the one this
// host's name resolves to (loopback where it resolves to nothing), as torch.distributed picks.
char* ugatit_gloo_new(UgatitStore* store, int rank, int size, int64_t timeout_ms, UgatitGroup** out) {
  try {
    auto options = c10d::ProcessGroupGloo::Options::create_default(millis(timeout_ms));
    auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(store->store, rank, size, options);
    *out = new UgatitGroup{gloo};
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  }
}

void ugatit_group_free(UgatitGroup* group) {
  delete group;
}

// Starts summing `t` over every rank, in place; ugatit_work_wait finishes it. The collective
// runs on the backend's own threads (Gloo's) or stream (NCCL's) while the caller computes on.
char* ugatit_allreduce_start(UgatitGroup* group, at::Tensor* t, int64_t timeout_ms, UgatitWork** work) {
  try {
    std::vector<at::Tensor> tensors{*t};
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    options.timeout = millis(timeout_ms);
    *work = new UgatitWork{group->backend->allreduce(tensors, options)};
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  }
}

// Waits up to `timeout_ms` for `work` and releases it, whatever the outcome.
char* ugatit_work_wait(UgatitWork* work, int64_t timeout_ms) {
  std::unique_ptr<UgatitWork> owned(work);
  try {
    owned->work->wait(millis(timeout_ms));
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  }
}

// Releases `work` without waiting (after an earlier failure: the group is being torn down).
void ugatit_work_free(UgatitWork* work) {
  delete work;
}

// Copies rank `root`'s `t` into every rank's `t`.
char* ugatit_broadcast(UgatitGroup* group, at::Tensor* t, int root, int64_t timeout_ms) {
  try {
    std::vector<at::Tensor> tensors{*t};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    options.timeout = millis(timeout_ms);
    group->backend->broadcast(tensors, options)->wait(millis(timeout_ms));
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  }
}

}  // extern "C"
