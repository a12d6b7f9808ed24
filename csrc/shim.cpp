// The project's C++ shim: the few libtorch calls that tch 0.24 does not bind (the autocast
// dtype, memory formats, the operator profiler with input shapes), behind a minimal C API that `src/shim.rs`
// wraps safely.
//
// Tensors cross as tch's handles (`at::Tensor*`, torch-sys's `C_tensor`). No C++ exception
// crosses the boundary: a failing call returns a heap-allocated message, freed by
// `ugatit_free_message`, and null on success.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/profiler_legacy.h>

#include <cstring>
#include <exception>
#include <fstream>
#include <iomanip>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

char* message(const std::exception& e) {
  return strdup(e.what());
}

at::DeviceType device_type(int code) {
  return code == 0 ? at::DeviceType::CPU : at::DeviceType::CUDA;
}

// `text` as the body of a JSON string.
std::string json_escaped(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) out += c;
  }
  return out;
}

// `[[1, 256, 64, 64], []]`: an operator's input shapes as the Chrome trace's "Input Dims".
std::string shapes_text(const std::vector<std::vector<int64_t>>& shapes) {
  std::string out = "[";
  for (size_t i = 0; i < shapes.size(); ++i) {
    out += i ? ", [" : "[";
    for (size_t j = 0; j < shapes[i].size(); ++j) out += (j ? ", " : "") + std::to_string(shapes[i][j]);
    out += "]";
  }
  return out + "]";
}

// The legacy profiler's push/pop event pairs as complete ("X") Chrome trace events, with their
// input shapes: what `RecordProfile` writes, plus the shapes.
void write_trace(const std::string& path, const torch::autograd::profiler::thread_event_lists& lists) {
  using torch::autograd::profiler::EventKind;
  using torch::autograd::profiler::LegacyEvent;
  std::ofstream out(path);
  if (!out) throw std::runtime_error("cannot create " + path);
  out << std::fixed << std::setprecision(3) << "[";
  bool first = true;
  for (const auto& events : lists) {
    std::unordered_map<uint64_t, const LegacyEvent*> open;
    for (const auto& e : events) {
      if (e.kind() == EventKind::PushRange) {
        open[e.handle()] = &e;
      } else if (e.kind() == EventKind::PopRange) {
        auto start = open.find(e.handle());
        if (start == open.end()) continue;
        const LegacyEvent& s = *start->second;
        out << (first ? "\n" : ",\n") << "{\"name\": \"" << json_escaped(s.name()) << "\", \"ph\": \"X\", \"ts\": "
            << s.cpuUs() << ", \"dur\": " << s.cpuElapsedUs(e) << ", \"tid\": " << s.threadId()
            << ", \"pid\": \"CPU Functions\", \"args\": {\"Input Dims\": \"" << shapes_text(s.shapes()) << "\"}}";
        first = false;
        open.erase(start);
      }
    }
  }
  out << "\n]\n";
  if (!out) throw std::runtime_error("writing " + path + " failed");
}

}  // namespace

extern "C" {

void ugatit_free_message(char* message) {
  free(message);
}

// Enables autocast on a device type (0: CPU, 1: CUDA) with `dtype` (a c10::ScalarType code),
// reporting the state it replaces so that `ugatit_autocast_exit` can restore it.
//
// The cast cache is switched off: it keys the low-precision copy of a weight by the weight's
// storage, and a training step updates the discriminators' weights in place before the
// generator step runs them again, which would then see stale copies.
char* ugatit_autocast_enter(int device, int dtype, bool* was_enabled, int* was_dtype, bool* was_caching) {
  try {
    const auto type = device_type(device);
    *was_enabled = at::autocast::is_autocast_enabled(type);
    *was_dtype = static_cast<int>(at::autocast::get_autocast_dtype(type));
    *was_caching = at::autocast::is_autocast_cache_enabled();
    at::autocast::set_autocast_cache_enabled(false);
    at::autocast::set_autocast_enabled(type, true);
    at::autocast::set_autocast_dtype(type, static_cast<at::ScalarType>(dtype));
    at::autocast::increment_nesting();
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  }
}

// Restores the state `ugatit_autocast_enter` replaced; leaving the outermost region frees any
// cached low-precision copies (from an enclosing region that caches), as torch.autocast does.
char* ugatit_autocast_exit(int device, bool was_enabled, int was_dtype, bool was_caching) {
  try {
    const auto type = device_type(device);
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(type, was_enabled);
    at::autocast::set_autocast_dtype(type, static_cast<at::ScalarType>(was_dtype));
    at::autocast::set_autocast_cache_enabled(was_caching);
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  }
}

// The dtype autocast computes in on a device type, or -1 where it is off.
int ugatit_autocast_dtype(int device) {
  const auto type = device_type(device);
  return at::autocast::is_autocast_enabled(type) ? static_cast<int>(at::autocast::get_autocast_dtype(type)) : -1;
}

// Disables autocast on a device type inside an autocast region (for work that must stay in
// float32 whatever the caller's precision), reporting whether it was on.
char* ugatit_autocast_suspend(int device, bool* was_enabled) {
  try {
    const auto type = device_type(device);
    *was_enabled = at::autocast::is_autocast_enabled(type);
    at::autocast::set_autocast_enabled(type, false);
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  }
}

char* ugatit_autocast_resume(int device, bool was_enabled) {
  try {
    at::autocast::set_autocast_enabled(device_type(device), was_enabled);
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  }
}

// `t.contiguous(channels_last)`: the same values with NHWC strides (a new handle in `*out`).
char* ugatit_channels_last(const at::Tensor* t, at::Tensor** out) {
  try {
    *out = new at::Tensor(t->contiguous(at::MemoryFormat::ChannelsLast));
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  }
}

// Whether `t` is laid out channels-last (and is not also plain contiguous, as 1×1 maps are).
bool ugatit_is_channels_last(const at::Tensor* t) {
  return t->dim() == 4 && t->is_contiguous(at::MemoryFormat::ChannelsLast) && !t->is_contiguous();
}

// Starts libtorch's operator profiler on this thread, recording each operator's input shapes;
// `ugatit_profile_stop` writes every operator's range, as a Chrome trace, to `path`.
char* ugatit_profile_start(const char* path, void** handle) {
  try {
    using torch::profiler::impl::ProfilerConfig;
    using torch::profiler::impl::ProfilerState;
    torch::autograd::profiler::enableProfilerLegacy(ProfilerConfig(ProfilerState::CPU, /*report_input_shapes=*/true));
    *handle = new std::string(path);
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  }
}

char* ugatit_profile_stop(void* handle) {
  std::unique_ptr<std::string> path(static_cast<std::string*>(handle));
  try {
    write_trace(*path, torch::autograd::profiler::disableProfilerLegacy());
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  }
}

}  // extern "C"
